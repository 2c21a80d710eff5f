"""Events from the worker to the web app, on the Redis Stream described in ``protocol``."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpu_worker import protocol

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# Terminal events decide what the user sees, so a Redis blip (or a restart) must not lose them:
# about a minute of tries.
TERMINAL_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0) + (4.0,) * 14
# After a failed progress write, stop trying for a while: each try can block for seconds
# (redis-py retries connections itself) and the render should not wait on advisory events.
PROGRESS_PAUSE_AFTER_ERROR_S = 5.0


class EventEmitter:
    """Writes started/progress/preview/succeeded/failed/cancelled events, throttling progress at the source.

    Progress for one (generation, attempt) is sent at most once per ``min_interval`` seconds,
    except the final step or 100%, and the percent sent never moves backwards.
    """

    def __init__(
        self,
        redis: Redis,
        stream: str = protocol.EVENTS_STREAM,
        *,
        worker: str,
        maxlen: int = protocol.EVENTS_STREAM_MAXLEN,
        min_interval: float = protocol.PROGRESS_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        retry_delays: tuple[float, ...] = TERMINAL_RETRY_DELAYS_S,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.worker = worker
        self.maxlen = maxlen
        self.min_interval = min_interval
        self.clock = clock
        self.retry_delays = retry_delays
        # (generation_id, attempt) -> (clock of the last progress sent, last percent sent)
        self._last_progress: dict[tuple[int, int], tuple[float, float]] = {}
        self._progress_paused_until = float("-inf")

    def started(self, generation_id: int, attempt: int) -> None:
        self._last_progress.pop((generation_id, attempt), None)
        self._emit(protocol.STARTED, generation_id, attempt, {}, critical=True)

    def progress(
        self,
        generation_id: int,
        attempt: int,
        percent: float,
        step: int | None = None,
        steps: int | None = None,
        message: str = "",
    ) -> bool:
        """Send a progress event unless throttled; returns whether it was sent."""
        key = (generation_id, attempt)
        now = self.clock()
        last_at, last_percent = self._last_progress.get(key, (None, 0.0))
        percent = min(100.0, max(float(percent), last_percent))
        final = percent >= 100.0 or (steps is not None and step == steps)
        if last_at is not None and now - last_at < self.min_interval and not final:
            return False
        if now < self._progress_paused_until:
            return False
        fields = {"percent": round(percent, 2), "step": step, "steps": steps, "message": message}
        # Progress is advisory: losing one is better than failing a render over a Redis blip.
        if not self._emit(protocol.PROGRESS, generation_id, attempt, fields, critical=False):
            self._progress_paused_until = self.clock() + PROGRESS_PAUSE_AFTER_ERROR_S
            return False
        self._last_progress[key] = (now, percent)
        return True

    def succeeded(self, generation_id: int, attempt: int, outputs: list[str]) -> None:
        self._last_progress.pop((generation_id, attempt), None)
        self._emit(protocol.SUCCEEDED, generation_id, attempt, {"outputs": list(outputs)}, critical=True)

    def failed(
        self, generation_id: int, attempt: int, message: str, detail: str = "", retriable: bool = False
    ) -> None:
        self._last_progress.pop((generation_id, attempt), None)
        fields = {"message": message, "detail": detail, "retriable": bool(retriable)}
        self._emit(protocol.FAILED, generation_id, attempt, fields, critical=True)

    def cancelled(self, generation_id: int, attempt: int) -> None:
        self._last_progress.pop((generation_id, attempt), None)
        self._emit(protocol.CANCELLED, generation_id, attempt, {}, critical=True)

    def refused(self, job_id: str, reason: str, generation_id: int = 0, attempt: int = 0) -> bool:
        """Report a job this worker would not run (``guard``); advisory, for the admins."""
        fields = {"job_id": job_id[:200], "reason": reason[:300]}
        return self._emit(protocol.REFUSED, generation_id, attempt, fields, critical=False)

    def preview(
        self, generation_id: int, attempt: int, image: bytes, content_type: str, width: int, height: int
    ) -> bool:
        """Send one (already small) preview image; advisory like progress. The caller throttles."""
        if len(image) > protocol.PREVIEW_MAX_BYTES or self.clock() < self._progress_paused_until:
            return False
        fields = {
            "image": base64.b64encode(image).decode("ascii"),
            "content_type": content_type,
            "width": width,
            "height": height,
        }
        if not self._emit(protocol.PREVIEW, generation_id, attempt, fields, critical=False):
            self._progress_paused_until = self.clock() + PROGRESS_PAUSE_AFTER_ERROR_S
            return False
        return True

    def _emit(
        self, type_: str, generation_id: int, attempt: int, fields: dict[str, Any], *, critical: bool
    ) -> bool:
        from redis.exceptions import ConnectionError, TimeoutError

        event = {
            "type": type_,
            "generation_id": generation_id,
            "attempt": attempt,
            "worker": self.worker,
            "ts": time.time(),
            **fields,
        }
        data = json.dumps(event)
        delays = self.retry_delays if critical else ()
        for retry in range(len(delays) + 1):
            try:
                self.redis.xadd(self.stream, {"data": data}, maxlen=self.maxlen, approximate=True)
                return True
            except (ConnectionError, TimeoutError):
                if retry == len(delays):
                    if critical:
                        raise
                    log.warning("Dropped %s event for generation %s: Redis unavailable", type_, generation_id)
                    return False
                time.sleep(delays[retry])
        return False  # unreachable, for the type checker
