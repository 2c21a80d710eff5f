from __future__ import annotations

from generations.domain.capacity import Shape, capacity


def test_it_reproduces_the_research_figures_for_six_per_round() -> None:
    found = capacity(Shape(filmmakers=20, rounds=5, per_round=6, minutes_per_job=4))
    assert (found.jobs, found.gpu_hours, found.containers) == (600, 40.0, 16)


def test_it_reproduces_the_research_figures_for_fifteen_per_round() -> None:
    found = capacity(Shape(filmmakers=20, rounds=5, per_round=15, minutes_per_job=4))
    assert (found.jobs, found.gpu_hours, found.containers) == (1500, 100.0, 40)


def test_it_says_one_h100_does_fifteen_four_minute_jobs_an_hour() -> None:
    assert capacity(Shape(minutes_per_job=4)).jobs_per_gpu_hour == 15


def test_it_bills_whole_granules() -> None:
    per_second = capacity(Shape(rounds=1, round_minutes=25, billing_seconds=1, price_per_hour=6))
    per_ten_minutes = capacity(Shape(rounds=1, round_minutes=25, billing_seconds=600, price_per_hour=6))
    assert per_ten_minutes.cost / per_second.cost == 30 / 25


def test_it_simulates_the_wait_for_the_last_first_take() -> None:
    found = capacity(Shape(filmmakers=20, per_round=6, minutes_per_job=4))
    assert 4 < found.last_first_take_min < 12 and found.median_first_take_min <= found.last_first_take_min


def test_it_shows_the_planner_to_instructors(instructor, client) -> None:
    client.force_login(instructor)
    html = client.get(
        "/instructor/planner?filmmakers=20&rounds=5&per_round=15&minutes_per_job=4&round_minutes=30"
        "&price_per_hour=3&billing_seconds=1&cold_start_s=60"
    ).content.decode()
    assert "<td>1500</td>" in html and "<td>100.0</td>" in html and "<td>40</td>" in html


def test_it_refuses_the_planner_to_filmmakers(owner_client) -> None:
    assert owner_client.get("/instructor/planner").status_code == 403
