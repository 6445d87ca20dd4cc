"""Skip for jobs on replicas: a small Ray actor the front writes skips to and the replica running the job awaits.

Interrupt reaches a replica by cancelling the job's own Serve request. Skip cannot travel that way (the job goes
on), and no second Serve call reaches a replica while it runs a job (`max_ongoing_requests=1`: a call or a
broadcast waits until the job has ended). So the front counts each skip here, under the job's key, and the replica
running that job keeps one call to `next_skip` open: it returns as soon as the count goes up, and the replica skips
the image its engine is sampling, within a step, exactly as a local skip does.
"""

from __future__ import annotations

import asyncio

import ray

ENDED_KEPT = 4096  # ended job keys remembered, so a late `next_skip` for an ended job returns at once


@ray.remote(num_cpus=0)
class JobSignals:
    """Skip counts per job key (async actor: waiting callers cost no thread)."""

    def __init__(self):
        self._skips: dict[str, int] = {}
        self._ended: dict[str, None] = {}  # insertion-ordered set of ended keys
        self._changed = asyncio.Condition()

    async def skip(self, key: str) -> int:
        """The front: one more skip for this job (it ends the image being sampled); the new count."""
        async with self._changed:
            if key in self._ended:
                return 0
            self._skips[key] = self._skips.get(key, 0) + 1
            self._changed.notify_all()
            return self._skips[key]

    async def next_skip(self, key: str, seen: int) -> int | None:
        """The replica: wait until the job's skip count exceeds `seen` and return it; None once the job ended."""
        async with self._changed:
            await self._changed.wait_for(lambda: key in self._ended or self._skips.get(key, 0) > seen)
            return None if key in self._ended else self._skips[key]

    async def end(self, key: str) -> None:
        """The front: the job ended; its waiter returns None and its count is dropped."""
        async with self._changed:
            self._skips.pop(key, None)
            self._ended[key] = None
            while len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
            self._changed.notify_all()
