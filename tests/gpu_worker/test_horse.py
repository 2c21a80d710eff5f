"""The work-horse and its parent: one render per worker name, a phase shared across the fork, and a
work-horse that dies with its parent (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from gpu_worker import protocol
from gpu_worker.horse import Phase, RenderLock
from tests.live import alive, wait_for

from .conftest import ROOT


def test_it_knows_who_renders_for_a_name(tmp_path: Path) -> None:
    lock = RenderLock("gpu 1", tmp_path)
    assert lock.holder() is None
    hold = f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
    hold += "from gpu_worker.horse import RenderLock; "
    hold += f"RenderLock('gpu 1', Path({str(tmp_path)!r})).hold(); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", hold])
    try:
        wait_for(lambda: lock.holder() == child.pid, timeout=20, what="the child to hold the lock")
        assert not RenderLock("gpu 1", tmp_path).hold()
    finally:
        child.kill()
        child.wait()
    assert lock.holder() is None  # released by its death, whatever the way


def test_the_parent_reads_the_phase_the_work_horse_writes() -> None:
    phase = Phase()
    pid = os.fork()
    if pid == 0:
        phase.set(protocol.DELIVERING)
        phase.delivered(True)
        os._exit(0)
    os.waitpid(pid, 0)
    assert phase.get() == protocol.DELIVERING and phase.delivered()
    phase.set("")
    assert phase.get() == ""


CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from gpu_worker.horse import die_with_parent
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.setpgrp()  # as RQ's work-horse does: a process group of its own
        die_with_parent(parent)
        time.sleep(600)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(600)
    """
)


def test_the_work_horse_dies_with_its_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT))], stdout=subprocess.PIPE, start_new_session=True
    )
    horse = int(parent.stdout.readline())
    assert alive(horse)
    parent.kill()  # the parent alone, SIGKILLed
    parent.wait()
    wait_for(lambda: not alive(horse), timeout=10, what="the orphan to die")
