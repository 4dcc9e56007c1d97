"""A SIGTERM during a daemon's start-up is kept for its loop, not the end of the process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from ingest.daemon import shutdown


def test_a_sigterm_before_the_loop_is_kept_and_the_process_lives() -> None:
    # in a child: the latch replaces the process-wide handler, which this test process must keep
    code = textwrap.dedent(
        """
        import os, signal, time
        from ingest.daemon import shutdown
        assert not shutdown.requested()
        shutdown.latch()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        print("requested" if shutdown.requested() else "lost")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "requested"


def test_without_the_latch_sigterm_ends_the_process_by_the_signal() -> None:
    # the reference the latch is measured against: Python's default action
    code = "import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert out.returncode == -signal.SIGTERM


def test_sigint_keeps_its_default_so_ctrl_c_interrupts_a_hung_start() -> None:
    before = signal.getsignal(signal.SIGINT)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        shutdown.latch()
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGTERM, previous)
