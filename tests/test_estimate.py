"""The cost model and the line laid onto the workers (pure: generations.domain.estimate)."""

from __future__ import annotations

from generations.domain.estimate import Duration, Lane, Line, Run, by_kind, fit, predict, remaining


def test_it_separates_a_fixed_overhead_from_the_cost_per_unit() -> None:
    model = fit([Run(100, 30), Run(300, 50), Run(100, 30), Run(300, 50)])
    assert model is not None and round(model.overhead) == 20 and round(model.per_unit, 3) == 0.1


def test_it_says_measuring_until_there_are_enough_runs() -> None:
    assert fit([Run(100, 30), Run(300, 50)]) is None
    guess = predict(None, 200, fallback=120)
    assert not guess.measured and guess.seconds == 120 and guess.low < 120 < guess.high


def test_it_does_not_scale_a_tiny_run_linearly() -> None:
    # The morning: a 9-frame 64² smoke test, then a 25-frame 256² job.
    model = fit([Run(9 * 64 * 64, 8), Run(9 * 64 * 64, 9), Run(9 * 64 * 64, 8.5)])
    big = predict(model, 25 * 256 * 256, fallback=120)
    assert model is not None and model.narrow and not big.measured
    near = predict(model, 9 * 64 * 64, fallback=120)
    assert near.measured and 8 <= near.seconds <= 9


def test_it_drops_a_run_far_off_the_line() -> None:
    runs = [Run(100, 30), Run(200, 40), Run(300, 50), Run(100, 30), Run(200, 400)]
    model = fit(runs)
    assert model is not None and model.runs == 4 and round(model.seconds(200)) == 40


def test_it_widens_the_range_with_the_spread_of_the_runs() -> None:
    tight = fit([Run(100, 30), Run(300, 50), Run(200, 40)])
    loose = fit([Run(100, 24), Run(300, 60), Run(200, 34), Run(100, 36), Run(300, 40)])
    assert tight is not None and loose is not None and loose.width > tight.width


def test_it_keeps_a_model_per_worker_kind_when_kinds_differ() -> None:
    runs = {
        "H100": [Run(100, 10), Run(300, 20), Run(200, 15)],
        "A10": [Run(100, 30), Run(300, 70), Run(200, 50)],
    }
    models = by_kind(runs)
    fast, slow = models["H100"], models["A10"]
    assert fast is not None and slow is not None and fast.seconds(200) < slow.seconds(200)
    assert models[""] is not None


def test_it_gives_the_next_job_to_the_worker_free_soonest() -> None:
    line = Line(
        lanes=[Lane("gpu-1", (30, 25, 40), last_job=4), Lane("gpu-2", (10, 8, 14), last_job=7)], cold_start=90
    )
    first = line.place(11, Duration(20, 15, 25, True))
    second = line.place(12, Duration(20, 15, 25, True))
    assert (first.lane, first.after, first.start, first.done) == ("gpu-2", 7, 10, 30)
    assert (second.lane, second.after, second.start) == ("gpu-1", 4, 30)


def test_it_waits_for_a_cold_start_when_no_worker_runs() -> None:
    slot = Line(lanes=[], cold_start=90).place(1, Duration(20, 15, 25, True))
    assert slot.warming and slot.start == 90 and slot.done == 110


def test_it_trusts_progress_past_a_fifth_of_the_way() -> None:
    left, low, high = remaining(Duration(100, 80, 120, True), elapsed=30, progress=50)
    assert left == 30 and low < left < high
    assert remaining(Duration(100, 80, 120, True), elapsed=30, progress=5)[0] == 70
