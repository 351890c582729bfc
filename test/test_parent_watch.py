"""core.parent_watch: a worker whose parent was killed ends too, instead of holding its memory forever."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deer_vla.core.parent_watch import exit_with_parent

REPO = Path(__file__).resolve().parents[1]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # exited, waiting for its new parent to reap it


@pytest.mark.parametrize("watched", [True, False])
def test_a_worker_ends_when_its_parent_is_killed(watched: bool) -> None:
    child = textwrap.dedent(f"""
        import time
        from deer_vla.core.parent_watch import exit_with_parent
        if {watched}:
            exit_with_parent(poll_s=0.05)
        time.sleep(30)
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        print(child.pid, flush=True)
        time.sleep(1.0)  # the child is up and watching
        os.kill(os.getpid(), 9)  # no cleanup, as the OOM killer does it
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == -9
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _gone(pid) is watched  # unwatched, the orphan is still there (the defect this guards against)
    finally:
        if not _gone(pid):
            os.kill(pid, 9)


def test_the_poll_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll_s"):
        exit_with_parent(poll_s=0)


def test_a_spawn_worker_whose_parent_died_before_it_watched_ends_too(tmp_path: Path) -> None:
    """The parent was taken from os.getppid() when the watch started: killed while its worker was still starting
    (an audit's `deer-vla collect --workers 2`, SIGKILLed at once), the worker saw init as its parent and stayed,
    blocked on its job queue with its simulators."""
    parent = textwrap.dedent("""
        import multiprocessing as mp, os, sys, time

        def worker(ready):
            ready.wait(20)  # the parent is gone before the watch starts
            from deer_vla.core.parent_watch import exit_with_parent
            exit_with_parent(poll_s=0.05)
            time.sleep(30)

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            ready = ctx.Event()
            proc = ctx.Process(target=worker, args=(ready,))
            proc.start()
            print(proc.pid, flush=True)
            time.sleep(0.5)
            ready.set()
            os.kill(os.getpid(), 9)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    script, out = tmp_path / "parent.py", tmp_path / "out.txt"
    script.write_text(parent)
    with out.open("w") as sink:  # not a pipe: the worker holds its parent's stdout, and run() would wait for it
        proc = subprocess.run([sys.executable, str(script)], stdout=sink, stderr=subprocess.STDOUT, timeout=60,
                              env=env)
    assert proc.returncode == -9, out.read_text()
    pid = int(out.read_text().split()[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _gone(pid)
    finally:
        if not _gone(pid):
            os.kill(pid, 9)
