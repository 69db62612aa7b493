"""Signals in the Ray driver: a run that the user stopped must end marked interrupted,
whatever Ray Train did with the signal (harness/run_state.py's RayRun.fit uses both).

- `noting_sigint`: Ray Train (2.60, Train V2) installs its own SIGINT handler inside fit(),
  which asks its controller to abort and ends fit() normally; an abort sent while the
  controller was still starting was lost and the run completed.
- `terminate_as_interrupt`: SIGTERM and SIGHUP end the run as Ctrl-C does.
"""

import contextlib
import signal
import threading


@contextlib.contextmanager
def noting_sigint():
    """Yield an Event that is set when SIGINT arrives, whoever handles it.

    signal.signal is wrapped for the duration, so that a handler installed meanwhile (Ray
    Train's) also sets the event first.
    """
    interrupted = threading.Event()
    original = signal.signal

    def note_then(handler):
        def noting(signum, frame):
            interrupted.set()
            return handler(signum, frame)
        return noting

    def wrapping(signum, handler):
        if signum == signal.SIGINT and callable(handler):
            return original(signum, note_then(handler))
        return original(signum, handler)

    previous = signal.getsignal(signal.SIGINT)
    if callable(previous):  # an ignored SIGINT (a background job) stays ignored
        original(signal.SIGINT, note_then(previous))
    signal.signal = wrapping
    try:
        yield interrupted
    finally:
        signal.signal = original
        if previous is not None:
            original(signal.SIGINT, previous)


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (kill, timeout) and SIGHUP (the terminal closed) end the run as Ctrl-C does:
    marked interrupted, with Ray shut down, instead of killing the driver on the spot."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
