"""A Redis database of its own for each test run (loaded with ``-p tests.redis_db``, see pyproject.toml).

The tests flush their Redis database, so two runs on one machine (two developers, a developer and
CI, a benchmark) must never share one. Unless REDIS_URL is set, each run claims a free database
number (1 to 15; 0 is the demo's) with a key in database 0 that names its process, and frees it
when it ends. A claim whose process is gone is taken over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Generator

import pytest
import redis

BASE = "redis://127.0.0.1:6379"
CLAIM = "workshop:tests:redis-db:{n}"
CLAIM_TTL_S = 6 * 3600  # a run that never ends (a killed CI machine) frees its claim after this
DATABASES = range(15, 0, -1)

_claimed: tuple[redis.Redis, str, str] | None = None


def _alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's run: only its TTL frees it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(conn: redis.Redis) -> int:
    """The number of a database no other live run holds, now held by this process."""
    global _claimed
    me = f"{socket.gethostname()}:{os.getpid()}"
    for n in DATABASES:
        key = CLAIM.format(n=n)
        if conn.set(key, me, nx=True, ex=CLAIM_TTL_S):
            _claimed = (conn, key, me)
            return n
        owner = (conn.get(key) or b"").decode()
        # A dead run's claim: take it over, but only if nobody else did in the meantime.
        if (
            owner
            and not _alive(owner)
            and conn.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) else return false end",
                1,
                key,
                owner,
                me,
                CLAIM_TTL_S,
            )
        ):
            _claimed = (conn, key, me)
            return n
    raise pytest.UsageError(
        f"Every Redis database 1-15 at {BASE} is held by another test run; set REDIS_URL to choose one."
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, object, object]:
    # A wrapper runs before pytest-env and pytest-django read the environment into the settings.
    if not os.environ.get("REDIS_URL"):
        conn = redis.Redis.from_url(f"{BASE}/0")
        try:
            n = claim(conn)
        except redis.RedisError as exc:
            raise pytest.UsageError(f"The tests need Redis at {BASE}: {exc}") from exc
        os.environ["REDIS_URL"] = f"{BASE}/{n}"
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    release()


def release() -> None:
    """Give the claimed database back (a benchmark calls it at exit; a test run when it ends)."""
    if _claimed is not None:
        conn, key, me = _claimed
        try:
            conn.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end",
                1,
                key,
                me,
            )
        except redis.RedisError:
            pass  # its TTL frees it
