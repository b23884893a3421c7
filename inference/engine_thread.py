"""The thread under each local engine: started on demand, ended when idle, closed with or without draining.

Both engines (inference/batching.py, inference/llamacpp.py) queue submissions,
run them on one thread of their own and shut down the same way; only what the
thread does with a submission differs, in the subclass's `_run`.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

from inference.tickets import EngineStopped

# An engine's thread ends after this long without work; the next submission starts a new one.
IDLE_EXIT_S = 30.0

Item = TypeVar("Item")


class EngineThread(Generic[Item]):
    """A queue of submissions and the one thread that serves them.

    Subclasses implement `_run` (on the thread) and `_release` (let go of the
    model); `_incoming`, `_closing` and `_drain` are read holding `_wakeup`.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._incoming: deque[Item] = deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._drain = True
        self._stopped = False
        # Why the engine gave up serving, for readiness; None while it serves.
        self.failure: str | None = None

    def close(self, *, drain: bool) -> None:
        """Stop the engine: after finishing what it holds (`drain`), or failing it at once.

        Draining keeps accepting submissions until the thread has nothing left, so a
        request never lands on an engine that will not run it: it either runs or gets
        EngineStopped and can go to the model that replaced this one.
        """
        with self._wakeup:
            self._closing = True
            self._drain = self._drain and drain
            if self._thread is None:
                self._stop()
            self._wakeup.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the engine thread to end (after `close`); True once it has.

        A process that exits while the thread is still inside torch can abort
        ("terminate called without an active exception"), so shutdown waits.
        """
        with self._wakeup:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _enqueue(self, item: Item) -> None:
        """Queue a submission, starting the thread if none runs; raises EngineStopped once closed."""
        with self._wakeup:
            if self._stopped or self._aborting:
                raise self._closed()
            self._incoming.append(item)
            if self._thread is None:  # started on demand: an idle engine holds no thread
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wakeup.notify()

    @property
    def _aborting(self) -> bool:
        """Closed without draining: what is queued or running fails now."""
        return self._closing and not self._drain

    def _closed(self) -> EngineStopped:
        return EngineStopped(f"{self._name}: closed")

    def _wait_for_work(self) -> bool:
        """On the thread, holding `_wakeup`: wait for a submission or `close`; False
        after a long idle, when the thread ends.

        Ending it (submit starts another) means an engine nobody holds any more does
        not keep its model alive through its thread.
        """
        if self._wakeup.wait_for(lambda: self._incoming or self._closing, timeout=IDLE_EXIT_S):
            return True
        self._thread = None
        return False

    def _stop(self) -> None:
        """Refuse submissions from now on and let go of the model.

        Call holding `_wakeup`: then no submission can slip in after the last one taken.
        """
        self._stopped = True
        self._release()

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the model (a retired model is freed once its engine stops)."""
        raise NotImplementedError
