"""A bounded pool of solver threads whose queued jobs can be cancelled by their owner.

The solver already uses every core (torch) or the one GPU stream, so the default is a single
worker; the queue is bounded so an overloaded engine answers ``busy`` instead of piling up
memory. A client that disconnects has its queued (not yet started) jobs dropped.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from dfdb_bridge.errors import BridgeError


@dataclass
class _Job:
    owner: Hashable
    fn: Callable[[], Any]
    future: Future


class SolverPool:
    """``workers`` threads running submitted callables; at most ``max_queue`` waiting."""

    def __init__(self, workers: int = 1, max_queue: int = 32) -> None:
        if workers < 1:
            raise ValueError("a solver pool needs at least one worker")
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._max_queue = max_queue
        self._closing = False
        self.running = 0
        self._threads = [threading.Thread(target=self._work, name=f"dfdb-solver-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, owner: Hashable, fn: Callable[[], Any]) -> Future:
        """Queue ``fn``; ``busy`` when the queue is full, ``cancelled`` when shutting down."""
        with self._cond:
            if self._closing:
                raise BridgeError("cancelled", "the engine is shutting down")
            if len(self._queue) >= self._max_queue:
                raise BridgeError("busy", f"{len(self._queue)} jobs are already waiting; retry later")
            job = _Job(owner, fn, Future())
            self._queue.append(job)
            self._cond.notify()
            return job.future

    def cancel_owner(self, owner: Hashable) -> int:
        """Drop the owner's queued jobs (their futures are cancelled); returns how many."""
        with self._cond:
            mine = [j for j in self._queue if j.owner == owner]
            for job in mine:
                self._queue.remove(job)
                job.future.cancel()
            return len(mine)

    def close(self, timeout: float | None = None) -> None:
        """Fail queued jobs with ``cancelled``, let running ones finish, stop the threads."""
        with self._cond:
            self._closing = True
            while self._queue:
                job = self._queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(BridgeError("cancelled", "the engine is shutting down"))
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                self.running += 1
            try:
                job.future.set_result(job.fn())
            except BaseException as err:  # delivered to the waiting connection
                job.future.set_exception(err)
            finally:
                with self._cond:
                    self.running -= 1
