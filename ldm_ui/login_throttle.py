"""Slow down password guessing: failed logins counted per user name and per client address, then refused.

Gradio's login route accepts unlimited guesses. ldm_ui/guard.py asks `retry_after` before it lets a login
through, and reports the outcome with `failed` or `succeeded`. A name or an address with too many failures in
the window is refused (429) until its oldest failure leaves the window, so a guesser gets at most
`per_user` tries per user name and `per_address` tries per address every `window_s` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)

FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 20
WINDOW_S = 15 * 60


class LoginThrottle:
    def __init__(self, per_user: int = FAILURES_PER_USER, per_address: int = FAILURES_PER_ADDRESS,
                 window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.per_user, self.per_address, self.window_s, self.clock = per_user, per_address, window_s, clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until this user name and address may try again; 0 when they may try now."""
        now = self.clock()
        with self._lock:
            waits = [self._wait(("user", user), self.per_user, now),
                     self._wait(("address", address), self.per_address, now)]
        return max(waits)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("user", user), ("address", address)):
                self._failures.setdefault(key, deque()).append(now)
            count = len(self._failures[("user", user)])
        log.warning("failed login for user %r from %s (%d in the last %d minutes)", user, address, count,
                    self.window_s // 60)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user), None)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if len(times) < limit:
            if not times:
                del self._failures[key]
            return 0.0
        return self.window_s - (now - times[-limit])
