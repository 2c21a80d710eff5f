"""Taking jobs only while the backend can run them: warming up, and launching ComfyUI.

``Gate.wait`` blocks (reporting "warming") until ``backend.check()`` passes, retrying with
backoff; with a launch command it starts ComfyUI itself (again, if it exits) and waits for it.
``GatedWorker`` asks the gate before every dequeue, so a worker whose ComfyUI died mid-job goes
back to warming up before it takes the next job. While idle it re-asks every ``recheck`` seconds.

It is also the serverless worker: it exits after ``idle_exit`` seconds ready with no job, and
on SIGTERM it finishes the job in hand, takes no other, and exits (the drain).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rq import Worker

from gpu_worker.backends import Backend, BackendUnavailable

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
RECHECK_S = 5
# Longest wait on the queues in one go: how late an idle worker notices a SIGTERM or its idle exit.
LISTEN_S = 1


class Launcher:
    """Runs the configured command (``--comfyui-command``) in its own process group."""

    def __init__(self, command: str, log_path: Path | None = None) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the ComfyUI command is empty")
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def ensure_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None:
            log.warning("ComfyUI exited with status %s; starting it again", self.process.returncode)
        if self._log is None and self.log_path is not None:
            self._log = self.log_path.open("ab")
        log.info("starting ComfyUI: %s", shlex.join(self.argv))
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Gate:
    """Whether jobs may be taken now; ``warming`` is what the heartbeat reports meanwhile."""

    def __init__(
        self,
        backend: Backend,
        *,
        launcher: Launcher | None = None,
        backoff: tuple[float, ...] = BACKOFF_S,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.backend, self.launcher, self.backoff = backend, launcher, backoff
        self._wake = threading.Event()
        # By default the backoff sleeps until `interrupt()`: a SIGTERM while warming ends it at once.
        self.sleep = sleep or self._wake.wait
        self.warming = True
        self.checked_at = float("-inf")  # time.monotonic() of the last check that passed
        self._problem = ""

    def ready(self) -> bool:
        try:
            self.backend.check()
        except BackendUnavailable as exc:
            if not self.warming:
                log.warning("backend %s became unavailable; warming up: %s", self.backend.name, exc)
            self.warming = True
            self._problem = str(exc)
            return False
        if self.warming:
            log.info("backend %s is ready", self.backend.name)
        self.warming = False
        self.checked_at = time.monotonic()
        return True

    def interrupt(self) -> None:
        """End the current backoff sleep (and every later one): the worker is stopping."""
        self._wake.set()

    def wait(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Block until the backend is ready (True) or ``should_stop()`` (False)."""
        attempt = 0
        while not should_stop():
            if self.ready():
                return True
            if self.launcher is not None:
                self.launcher.ensure_running()
            delay = self.backoff[min(attempt, len(self.backoff) - 1)]
            if attempt == 0:
                log.warning(
                    "warming up: %s (retrying with backoff up to %.0f s)", self._problem, self.backoff[-1]
                )
            attempt += 1
            self.sleep(delay)
        return False


class GatedWorker(Worker):
    """An RQ worker that dequeues only while its ``gate`` says the backend is ready, exits after
    ``idle_exit`` seconds ready without a job, and drains on SIGTERM."""

    gate: Gate
    recheck: float = RECHECK_S
    listen: int = LISTEN_S
    idle_exit: float | None = None
    jobs_done: int = 0
    idle_exited: bool = False

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            self.jobs_done += 1

    def subscribe(self) -> None:
        """RQ's, with its command channel polled every `listen` seconds instead of 60. redis-py 8's
        PubSubWorkerThread.stop() waits for the thread, whose poll, once RQ's teardown has
        unsubscribed, waits out its whole period: a drained worker took a minute to exit."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=self.listen, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def _shutdown(self) -> None:
        # RQ raises StopRequested from the signal handler when it is not busy; landing just after
        # a job has left the queue and before it is registered as started, that loses the job.
        # Only ask instead: a listening slice ends within `listen` seconds, and a job already
        # taken is finished first.
        log.info("stop requested: finishing the job in hand, taking no other")
        self._stop_requested = True
        self.set_shutdown_requested_date()
        self.gate.interrupt()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        idle = 0.0  # seconds ready with no job; warming up does not count
        check = True  # before every job, then every `recheck` seconds while idle
        while True:
            if check or time.monotonic() - self.gate.checked_at >= self.recheck:
                # A ComfyUI that died in the last job, or while we were idle, is noticed here.
                if not self.gate.wait(lambda: bool(self._stop_requested)):
                    return None  # asked to stop while warming: the work loop ends
                check = False
            if self._stop_requested:
                return None
            if timeout is None:  # burst: one look at the queues
                return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
            # Listen in short slices (RQ returns None once a slice passes idle).
            started = time.monotonic()
            result = super().dequeue_job_and_maintain_ttl(self.listen, max_idle_time=self.listen)
            if result is not None:
                return result
            idle += time.monotonic() - started
            if self.idle_exit is not None and idle >= self.idle_exit:
                log.info("idle for %.0f s with no job: exiting", idle)
                self.idle_exited = True
                return None
