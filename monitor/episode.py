"""Alert state: one episode fires once and resolves once.

While a rule stays breached nothing new is emitted; an episode resolves only
where the rule says the model is clearly back (see ``rule.RuleVerdict.clear``).
The scan is per batch: it jumps from one transition to the next with
``argmax`` over the remaining events, so its cost is the batch length, not a
Python step per event.

>>> import numpy as np
>>> breach = np.array([0, 1, 1, 0, 0, 1], dtype=bool)
>>> clear = np.array([1, 0, 0, 0, 1, 0], dtype=bool)
>>> state = EpisodeState()
>>> state.advance(breach, clear)
[(1, True), (4, False), (5, True)]
>>> state.firing
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class EpisodeState:
    """Whether an alert episode is open, and its id while it is."""

    def __init__(self) -> None:
        self.firing = False
        self.alert_id: str | None = None

    def state(self) -> dict[str, Any]:
        return {"firing": self.firing, "alert_id": self.alert_id}

    def restore(self, state: dict[str, Any]) -> None:
        firing, alert = state["firing"], state["alert_id"]
        if type(firing) is not bool or not (alert is None or type(alert) is str):
            raise ValueError(f"episode state {state!r}")
        self.firing, self.alert_id = firing, alert

    def advance(self, breach: npt.NDArray[np.bool_], clear: npt.NDArray[np.bool_]) -> list[tuple[int, bool]]:
        """Walk a batch; returns ``(index, firing)`` for every transition, in order.

        The caller sets ``alert_id`` for each firing it turns into an alert.
        """
        transitions: list[tuple[int, bool]] = []
        position, length = 0, int(breach.shape[0])
        while position < length:
            target = clear if self.firing else breach
            offset = int(np.argmax(target[position:]))
            if not target[position + offset]:
                break
            position += offset
            self.firing = not self.firing
            transitions.append((position, self.firing))
            position += 1
        return transitions

    def advance_with_cooldown(
        self, breach: npt.NDArray[np.bool_], clear: npt.NDArray[np.bool_], quiet: int, cooldown: int
    ) -> list[tuple[int, bool]]:
        """Like ``advance``, but no episode opens in the first ``quiet`` events, nor within ``cooldown`` after a resolution."""
        transitions: list[tuple[int, bool]] = []
        position, length = 0, int(breach.shape[0])
        blocked_until = quiet
        while position < length:
            if self.firing:
                hits = clear[position:]
            else:
                hits = breach[position:].copy()
                hits[: max(0, blocked_until - position)] = False
            offset = int(np.argmax(hits))
            if not hits[offset]:
                break
            position += offset
            self.firing = not self.firing
            transitions.append((position, self.firing))
            if not self.firing:
                blocked_until = position + 1 + cooldown
            position += 1
        return transitions
