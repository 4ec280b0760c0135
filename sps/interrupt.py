"""Signals that end a stage: SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the
main thread, which unwinds the stage (temporary files and the lock go) as Ctrl-C does.

An exception raised by a signal handler can land anywhere, also halfway through a
``queue.Queue.put`` or a condition variable's ``notify``, which leaves them broken for the
threads that share them (TensorBoard's writer thread then missed its shutdown and
``close()`` hung: seen under SIGTERM). Code of that kind runs inside :func:`deferred`:
a signal that arrives there is raised when it ends.
"""
from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_deferring = 0            # depth of nested deferred() blocks (main thread only)
_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: unwinds the stage (temporary files and the lock go)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):  # noqa: ARG001 - signal handler signature
    global _pending
    # the first signal unwinds the stage; more (a terminal's Ctrl-C reaches the whole process
    # group, and run.sh forwards it too) must not interrupt the clean-up
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt():
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` inside (SIGINT also when the
    shell started this process with it ignored, as a script does for background jobs);
    SIGHUP ignored on purpose (``nohup``) stays ignored. Restored afterwards. Outside the
    main thread it does nothing (Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig in SIGNALS:
        old = signal.getsignal(sig)
        if sig == signal.SIGHUP and old == signal.SIG_IGN:
            continue
        saved[sig] = old
        signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred():
    """A signal that arrives inside raises :class:`Interrupted` only when the block ends
    (nested blocks: the outermost). For code that shares locks, queues or condition
    variables with other threads."""
    global _deferring, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)
