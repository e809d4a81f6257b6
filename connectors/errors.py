"""How a connector says an action failed, so the actuator knows whether to try again."""

from __future__ import annotations


class ActionError(Exception):
    """An action on a platform did not happen; ``message`` is what the platform said."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientActionError(ActionError):
    """Worth retrying with backoff: timeouts, connection errors, 429, 5xx, a conflict that persisted."""

    retryable = True


class PermanentActionError(ActionError):
    """Retrying cannot help: 400, 403, 404, 422, an unknown cluster or a bad request."""
