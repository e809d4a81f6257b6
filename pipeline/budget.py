"""How many actions may still run: a cooldown per (service, action) and a circuit breaker over all.

Restarts of any kind share one cooldown per service: a ``restart_deployment`` right after a
``rollout_restart`` of the same service is the same disruption twice.

The policy keeps one budget in event time (so a replay decides the same), the actuator one in
wall-clock time (so it protects the target whatever the request says); both persist theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

RESTARTS = "restart"
"""The cooldown that every restarting action of a service shares."""
_COOLDOWN_OF = {"restart_deployment": RESTARTS, "rollout_restart": RESTARTS}


def _cooldown(action: str) -> str:
    return _COOLDOWN_OF.get(action, action)


class BudgetLimits(Protocol):
    cooldown_seconds: float
    breaker_max_actions: int
    breaker_window_seconds: float


@dataclass
class ActionBudget:
    last_action_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    recent_actions_ms: list[int] = field(default_factory=list)

    def hold_back(self, limits: BudgetLimits, service: str, action: str, now_ms: int) -> str | None:
        """Why ``action`` on ``service`` may not run at ``now_ms``, or None when it may."""
        last = self.last_action_ms.get((service, _cooldown(action)))
        if last is not None and now_ms - last < limits.cooldown_seconds * 1000:
            ago = (now_ms - last) / 1000
            shared = " (restarts of a service share one cooldown)" if _cooldown(action) == RESTARTS else ""
            left = limits.cooldown_seconds - ago
            return f"cooldown: {action} on {service} ran {ago:.0f}s ago; {left:.0f}s left{shared}"
        window_start = now_ms - limits.breaker_window_seconds * 1000
        self.recent_actions_ms = [ms for ms in self.recent_actions_ms if ms > window_start]
        if len(self.recent_actions_ms) >= limits.breaker_max_actions:
            return (
                f"circuit breaker open: {len(self.recent_actions_ms)} actions in the last "
                f"{limits.breaker_window_seconds:.0f}s (limit {limits.breaker_max_actions})"
            )
        return None

    def spend(self, service: str, action: str, now_ms: int) -> None:
        self.last_action_ms[(service, _cooldown(action))] = now_ms
        self.recent_actions_ms.append(now_ms)
