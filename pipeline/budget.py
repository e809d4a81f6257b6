"""How many actions may still run: a cooldown per (service, action) and a circuit breaker over all.

Disruptive actions of any kind share one cooldown per service, on top of each action's own:
a ``restart_deployment`` right after a ``rollout_restart`` of the same service, on GKE or on
Cloud Run, is the same disruption twice. Scaling keeps a cooldown of its own.

The policy keeps one budget in event time (so a replay decides the same), the actuator one in
wall-clock time (so it protects the target whatever the request says); both persist theirs. The
checks are functions of plain values, so the actuator can keep each service's cooldowns and the
breaker in records of their own.
"""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence
from dataclasses import dataclass, field
from typing import Protocol

RESTARTS = "restart"
"""The cooldown that every disruptive action of a service shares."""
_COOLDOWN_OF = {"restart_deployment": RESTARTS, "rollout_restart": RESTARTS}


def cooldown_of(action: str) -> str:
    """The cooldown ``action`` counts against."""
    return _COOLDOWN_OF.get(action, action)


class BudgetLimits(Protocol):
    cooldown_seconds: float
    breaker_max_actions: int
    breaker_window_seconds: float


def cooldown_hold(limits: BudgetLimits, last_ms: int | None, service: str, action: str, now_ms: int) -> str | None:
    """Why ``action`` on ``service`` may not run yet, its cooldown's last use being ``last_ms``."""
    if last_ms is None or now_ms - last_ms >= limits.cooldown_seconds * 1000:
        return None
    ago = (now_ms - last_ms) / 1000
    shared = " (disruptive actions of a service share one cooldown)" if cooldown_of(action) == RESTARTS else ""
    left = limits.cooldown_seconds - ago
    return f"cooldown: {action} on {service} ran {ago:.0f}s ago; {left:.0f}s left{shared}"


def breaker_hold(limits: BudgetLimits, recent_ms: MutableSequence[int], now_ms: int) -> str | None:
    """Why no action may run now, the breaker having counted ``recent_ms`` (pruned to its window)."""
    window_start = now_ms - limits.breaker_window_seconds * 1000
    recent_ms[:] = [ms for ms in recent_ms if ms > window_start]
    if len(recent_ms) >= limits.breaker_max_actions:
        return (
            f"circuit breaker open: {len(recent_ms)} actions in the last "
            f"{limits.breaker_window_seconds:.0f}s (limit {limits.breaker_max_actions})"
        )
    return None


def spend(cooldowns: MutableMapping[str, int], recent_ms: MutableSequence[int], action: str, now_ms: int) -> None:
    """Count ``action`` against its service's ``cooldowns`` and the breaker's ``recent_ms``."""
    cooldowns[cooldown_of(action)] = now_ms
    recent_ms.append(now_ms)


@dataclass
class ActionBudget:
    """Cooldowns of every service and the breaker in one object: the policy's, kept under one key."""

    last_action_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    recent_actions_ms: list[int] = field(default_factory=list)

    def hold_back(self, limits: BudgetLimits, service: str, action: str, now_ms: int) -> str | None:
        """Why ``action`` on ``service`` may not run at ``now_ms``, or None when it may."""
        last = self.last_action_ms.get((service, cooldown_of(action)))
        return cooldown_hold(limits, last, service, action, now_ms) or breaker_hold(
            limits, self.recent_actions_ms, now_ms
        )

    def spend(self, service: str, action: str, now_ms: int) -> None:
        self.last_action_ms[(service, cooldown_of(action))] = now_ms
        self.recent_actions_ms.append(now_ms)
