"""The loader in a Python process: the GIL is free while it waits, Ctrl-C interrupts it,
a fork never hangs, and memory stays flat over many epochs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import stoker
from conftest import PHOTOS, ROOT

# Upscaled and augmented with one worker: about 0.1 s per batch, so a wait is measurable.
SLOW = dict(batch_size=8, size=(1080, 1920), augment="default", num_workers=1, prefetch=1)


def test_another_thread_runs_while_next_waits():
    loader = stoker.Loader(PHOTOS, **SLOW)
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.2)
        start, c0 = time.perf_counter(), count
        time.sleep(0.3)
        free_rate = (count - c0) / (time.perf_counter() - start)
        it = iter(loader)
        waits = []
        for _ in range(3):
            start, c0 = time.perf_counter(), count
            next(it)
            elapsed = time.perf_counter() - start
            waits.append((elapsed, (count - c0) / elapsed))
        it.close()
    finally:
        stop = True
        t.join()
    # Every wait was long enough to matter, and the other thread kept a good part of its
    # pace through it (with the GIL held it would have stopped: a blocking call that holds
    # the GIL lets no other thread run).
    assert all(e > 0.02 for e, _ in waits), waits
    assert all(rate > 0.2 * free_rate for _, rate in waits), (waits, free_rate)


def test_ctrl_c_while_waiting_raises_keyboard_interrupt_quickly_and_the_process_exits():
    # Where the child stands if it hangs: its threads' Python stacks after 10 s, on stderr,
    # which the failure shows. The child sets Python's SIGINT handler itself: a process started
    # in the background by a non-interactive shell inherits SIGINT ignored, and Python then
    # installs no handler (Ctrl-C would do nothing, and this test would hang on the harness).
    code = f"""
import faulthandler, signal, sys, time, stoker
signal.signal(signal.SIGINT, signal.default_int_handler)
loader = stoker.Loader({str(PHOTOS)!r}, **{SLOW!r})
print("ready", flush=True)
faulthandler.dump_traceback_later(10, exit=False)
try:
    while True:
        for _ in loader:
            pass
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    sys.exit(3)
"""
    p = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"no exit 20 s after SIGINT; stdout: {out!r}; stderr:\n{err}")
        exited = time.monotonic()
    finally:
        p.kill()
    word, when = out.split()
    assert word == "interrupted", out + err
    assert float(when) - sent < 0.5, float(when) - sent
    assert p.returncode == 3
    # The loader's threads stopped and the interpreter exited, promptly.
    assert exited - sent < 5, exited - sent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_loader_used_after_fork_raises_and_one_made_in_the_child_works():
    code = f"""
import os, sys, stoker
PHOTOS = {str(PHOTOS)!r}
loader = stoker.Loader(PHOTOS, batch_size=8, num_workers=2)
next(iter(loader))
pid = os.fork()
if pid == 0:
    try:
        list(loader)
        print("child: no error", flush=True)
    except RuntimeError as e:
        print("child: RuntimeError", "fork" in str(e) and "forked" in str(e), flush=True)
    fresh = stoker.Loader(PHOTOS, batch_size=8, num_workers=2)
    print("child: fresh", sum(len(b) for b in fresh.batches()), flush=True)
    sys.exit(0)  # the inherited loader is freed here: it must not wait for absent threads
_, status = os.waitpid(pid, 0)
print("parent: child status", os.waitstatus_to_exitcode(status), flush=True)
print("parent: still", sum(len(b) for b in loader.batches()), flush=True)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "child: RuntimeError True" in lines, out.stdout
    assert "child: fresh 32" in lines
    assert "parent: child status 0" in lines
    assert "parent: still 32" in lines


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="no /proc")
def test_resident_memory_stays_flat_over_50_epochs():
    import stoker.torch as st

    for make in (stoker.Loader, st.Loader):
        loader = make(PHOTOS, batch_size=8, augment="default", normalize="imagenet", shuffle=True)
        samples = []
        for epoch in range(50):
            for images, labels in loader:
                pass
            if epoch >= 4:
                samples.append(rss())
        base = samples[0]
        assert max(samples) <= base * 1.05, [s / base for s in samples]
