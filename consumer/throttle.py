"""At most once per interval: the loop's periodic chores and its repeated warnings share this one helper.

>>> throttle = Throttle(10.0)
>>> [throttle.ready(now) for now in (0.0, 5.0, 10.0, 12.0, 25.0)]
[True, False, True, False, True]
"""

from __future__ import annotations


class Throttle:
    """Says yes once per ``interval_s`` of the clock the caller reads (the first call always passes)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    def ready(self, now: float) -> bool:
        """True (and the interval restarts at ``now``) when ``interval_s`` has passed since the last yes."""
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def restart(self, now: float) -> None:
        """Count the interval from ``now`` (after a chore run for another reason, such as a clean stop)."""
        self._last = now
