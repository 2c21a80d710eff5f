"""Which conductor acts: a short lease in Redis, renewed from a thread of the leader's own, fenced.

The lease key holds "<epoch>:<identity>" with a TTL of CONDUCTOR_LEADER_TTL (2 s): the epoch is bumped on
every acquisition, so a leader that lost the lease and got it back is a new one. A standby polls and
takes the key as soon as it lapses. The renewing thread keeps the lease through a slow pass (a long
query, a debounce), but stops with the process: a paused or dead leader loses it within the TTL.

Fencing: the leader counts its lease as valid only until the last renewal it *sent* plus the TTL less
a margin (the local clock runs on while a process is stopped, so a resumed leader knows at once that
it lost), and it re-checks the key atomically in Redis before each irreversible step (a dispatch, an
attempt lost). Event application needs no more: it is a compare-and-set that a duplicate cannot harm.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

LEADER_KEY = "workshop:conductor:leader"
EPOCH_KEY = "workshop:conductor:epoch"

# Take the key when nobody holds it, with a new epoch: returns the token, or nil.
_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return false end
local token = redis.call('incr', KEYS[2]) .. ':' .. ARGV[1]
redis.call('set', KEYS[1], token, 'PX', ARGV[2])
return token
"""
# Extend it only while it is still ours.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Milliseconds left on it when it is ours, else -3.
_LEFT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pttl', KEYS[1]) end
return -3
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaderLease:
    def __init__(self, conn: redis.Redis, *, identity: str, ttl: float, key: str = LEADER_KEY) -> None:
        self.redis, self.identity, self.key = conn, identity, key
        self.ttl = max(float(ttl), 0.4)
        # Renew four times per TTL; stop acting a quarter TTL before the key could lapse.
        self.every = self.ttl / 4
        self.margin = self.ttl / 4
        self.token = ""
        self._valid_until = 0.0  # time.monotonic()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def epoch(self) -> int:
        return int(self.token.split(":", 1)[0]) if self.token else 0

    def held(self) -> bool:
        """Ours, by this process's own clock (no round trip): checked before every event."""
        return bool(self.token) and time.monotonic() < self._valid_until

    def verify(self) -> bool:
        """Ours, checked atomically in Redis too: before an irreversible step."""
        if not self.held():
            return False
        try:
            left = int(self.redis.eval(_LEFT, 1, self.key, self.token))
        except redis.RedisError:
            return False
        return left > self.margin * 1000

    def acquire(self) -> bool:
        """Keep the lease, or take it if it lapsed. False while another conductor holds it."""
        if self.held():
            return True
        if self.token:
            self._lost("its lease lapsed before a renewal got through")
        sent = time.monotonic()
        token = self.redis.eval(_ACQUIRE, 2, self.key, EPOCH_KEY, self.identity, int(self.ttl * 1000))
        if not token:
            return False
        with self._guard:
            self.token = token.decode() if isinstance(token, bytes) else str(token)
            self._valid_until = sent + self.ttl - self.margin
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="leader-lease", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        token = self.token
        self._halt()
        if token:
            try:
                self.redis.eval(_RELEASE, 1, self.key, token)
            except redis.RedisError:
                pass  # it lapses by itself within the TTL

    def _renew_loop(self) -> None:
        token = self.token
        while not self._stop.wait(self.every):
            sent = time.monotonic()
            try:
                ok = int(self.redis.eval(_RENEW, 1, self.key, token, int(self.ttl * 1000)))
            except redis.RedisError as exc:
                # Not extended: the lease runs out by itself unless a later renewal gets through.
                log.warning("could not renew the leader lease: %s", exc)
                continue
            with self._guard:
                if self.token != token:
                    return
                if not ok:
                    self.token, self._valid_until = "", 0.0
                    log.warning("the leader lease was taken over")
                    return
                self._valid_until = sent + self.ttl - self.margin

    def _lost(self, why: str) -> None:
        log.warning("leader lease lost: %s", why)
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        with self._guard:
            self.token, self._valid_until = "", 0.0
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.every + 1)
