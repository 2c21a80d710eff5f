from __future__ import annotations

from gpu_worker import protocol
from gpu_worker.heartbeat import Heartbeat, parse_job_id


def test_it_parses_generation_and_attempt_from_a_job_id() -> None:
    assert parse_job_id(protocol.job_id(12, 3)) == ("12", "3")
    assert parse_job_id(None) == ("", "")
    assert parse_job_id("something-else") == ("", "")


def test_it_writes_who_the_worker_is_and_what_it_runs(redis_conn) -> None:
    beat = Heartbeat(redis_conn, name="w1", queues=["video"], probe=lambda: ("busy", "gen-5-a2"))
    beat.beat()
    fields = {k.decode(): v.decode() for k, v in redis_conn.hgetall(protocol.worker_key("w1")).items()}
    assert (fields["state"], fields["queues"], fields["generation_id"], fields["attempt"]) == (
        "busy",
        "video",
        "5",
        "2",
    )
    assert 0 < redis_conn.ttl(protocol.worker_key("w1")) <= protocol.HEARTBEAT_TTL_S
    assert redis_conn.sismember(protocol.WORKERS_SET, "w1")


def test_it_says_goodbye_when_stopped(redis_conn) -> None:
    beat = Heartbeat(redis_conn, name="w2", queues=["video"], probe=lambda: ("idle", None), interval=0.05)
    beat.start()
    beat.stop()
    assert not redis_conn.exists(protocol.worker_key("w2"))
    assert not redis_conn.sismember(protocol.WORKERS_SET, "w2")
