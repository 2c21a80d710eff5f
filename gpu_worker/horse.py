"""The work-horse and its parent: one render per worker at a time, and nothing outlives the worker.

RQ forks a work-horse per job into a process group of its own, so a SIGKILL of the worker (or of
its group) used to leave the render running as an orphan while a restarted worker of the same name
took a new job on the same GPU. Here:

- the work-horse asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
- it holds a lock file named after the worker while it runs, and a worker takes no job while
  another process holds it (an orphan on a system without the parent-death signal);
- it tells the parent what it is doing through a byte of shared memory (``Phase``), so the
  heartbeat says ``delivering`` while a finished render waits for the web app;
- it tells RQ how the job really ended when the web app gave up on the attempt or cancelled it
  (the cancel key), instead of "finished";
- the parent rides out a Redis restart instead of quitting (RQ's loop quits on any Redis error
  outside its dequeue).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.job import JobStatus
from rq.registry import CanceledJobRegistry

from gpu_worker import protocol
from gpu_worker.guard import GuardedWorker
from gpu_worker.heartbeat import parse_job_id

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def die_with_parent(parent_pid: int) -> bool:
    """In the work-horse: be SIGKILLed when the worker that forked it dies. Exits at once when the
    parent is already gone. False where the system offers no such signal (the lock still guards)."""
    armed = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        if not armed:
            log.warning("could not ask for the parent-death signal: errno %s", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request took effect
    return armed


class RenderLock:
    """A lock file per worker name, held by whichever process renders for that name."""

    def __init__(self, name: str, folder: Path | None = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        self.path = (folder or Path(tempfile.gettempdir())) / f"gpu-worker-{safe}.render.lock"
        self._fd: int | None = None

    def hold(self) -> bool:
        """Take the lock for this process's lifetime (the work-horse); False when another holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """The pid of a process that renders for this name now, or None."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


class Phase:
    """What the work-horse is doing, and whether it delivered, in memory shared across the fork: the
    parent's heartbeat reads it."""

    _STATES = ("", protocol.DELIVERING)

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, 2)  # anonymous and shared: the forked work-horse writes the same bytes

    def set(self, state: str) -> None:
        self._mem[0] = self._STATES.index(state)

    def get(self) -> str:
        return self._STATES[self._mem[0]] if self._mem[0] < len(self._STATES) else ""

    def delivered(self, value: bool | None = None) -> bool:
        """Every output uploaded and ``succeeded`` emitted (set by the work-horse, read after it)."""
        if value is not None:
            self._mem[1] = int(value)
        return bool(self._mem[1])


class HorseWorker(GuardedWorker):
    """The GuardedWorker (only our signed jobs), with a work-horse that dies with it, one render per
    name, the job's phase shared with the heartbeat, RQ told the truth about attempts the web app
    ended, and no exit over a Redis restart."""

    render_lock: RenderLock
    phase: Phase
    on_job_change: Callable[[], Any] = staticmethod(lambda: None)
    # Called with the job id of an attempt it delivered (the heartbeat says so from then on).
    on_delivered: Callable[[str], Any] = staticmethod(lambda job_id: None)
    # RQ backs off up to a minute between reconnections; a restarted Redis should be seen in seconds.
    max_connection_wait_time = 5.0
    orphan: int | None = None  # pid of another process that renders for our name
    job_id: str | None = None  # the job in hand, known before the fork (RQ's own is set after it)

    # --- the parent -----------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # Never two renders on one GPU: wait out an orphaned work-horse of an earlier worker of our name.
        while (holder := self.render_lock.holder()) is not None and not self._stop_requested:
            if self.orphan != holder:
                log.warning("process %s still renders for %s: taking no job until it ends", holder, self.name)
                self.orphan = holder
                self.on_job_change()  # the heartbeat says busy now
            self.heartbeat()  # RQ's own registration must not lapse meanwhile
            time.sleep(0.5)
        self.orphan = None
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def execute_job(self, job: Any, queue: Any) -> None:
        self.phase.set("")
        self.phase.delivered(False)
        self.job_id = job.id
        self.on_job_change()  # the heartbeat claims the job now, not at its next beat
        try:
            super().execute_job(job, queue)
        finally:
            self.job_id = None
            self.phase.set("")
            if self.phase.delivered():
                self.on_delivered(job.id)
            self.on_job_change()

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        _tolerant(super().heartbeat, *args, **kwargs)

    def maintain_heartbeats(self, *args: Any, **kwargs: Any) -> None:
        _tolerant(super().maintain_heartbeats, *args, **kwargs)

    def set_state(self, *args: Any, **kwargs: Any) -> None:
        _tolerant(super().set_state, *args, **kwargs)

    def check_for_suspension(self, *args: Any, **kwargs: Any) -> None:
        _tolerant(super().check_for_suspension, *args, **kwargs)

    def run_maintenance_tasks(self, *args: Any, **kwargs: Any) -> None:
        _tolerant(super().run_maintenance_tasks, *args, **kwargs)

    # --- the work-horse -------------------------------------------------------------------------

    def main_work_horse(self, job: Any, queue: Any) -> None:
        die_with_parent(self._parent_pid)
        if not self.render_lock.hold():
            # Another process renders for our name (the parent checked just before; a race lost).
            log.error(
                "another process renders for %s; leaving job %s to be dispatched again", self.name, job.id
            )
            os._exit(1)
        super().main_work_horse(job, queue)

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        self._parent_pid = os.getpid()
        super().fork_work_horse(job, queue)

    def cleanup_execution(self, job: Any, pipeline: Any, execution: Any = None) -> None:
        super().cleanup_execution(job, pipeline, execution)
        # Also the stand-in that a conductor rebuilt after Redis lost the job (see job_adopt): the job
        # has ended, so nothing of it may stay in the started registry.
        try:
            job.started_job_registry.remove_executions(job, pipeline=pipeline)
        except RedisError:
            pass

    def handle_job_success(self, job: Any, queue: Any, started_job_registry: Any, execution: Any) -> None:
        ended = _ended_by_web(self.connection, job.id)
        if ended is None:
            super().handle_job_success(job, queue, started_job_registry, execution)
        elif ended == protocol.CANCEL_LOST:
            self.handle_job_failure(
                job, queue, started_job_registry, "The web app gave up on this attempt (lost).", execution
            )
        else:
            with self.connection.pipeline() as pipe:
                job.set_status(JobStatus.CANCELED, pipeline=pipe)
                self.cleanup_execution(job, pipeline=pipe, execution=execution)
                CanceledJobRegistry(job.origin, connection=self.connection, serializer=self.serializer).add(
                    job, ttl=job.failure_ttl or 24 * 3600, pipeline=pipe
                )
                pipe.execute()


def _ended_by_web(conn: Any, job_id: str) -> str | None:
    """The cancel key's value when the web app ended this attempt, else None."""
    generation_id, attempt = parse_job_id(job_id)
    if not generation_id:
        return None
    try:
        value = conn.get(protocol.cancel_key(int(generation_id), int(attempt)))
    except RedisError:
        return None
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return protocol.CANCEL_LOST if text == protocol.CANCEL_LOST else protocol.CANCEL_CANCELLED


def _tolerant(method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        method(*args, **kwargs)
    except REDIS_DOWN as exc:
        log.warning("Redis unavailable (%s); carrying on", exc)
