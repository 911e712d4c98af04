"""One exception hierarchy. Every error a user can meet says what was wrong, where, and what to do.

``CortexError`` is the base. ``InputError`` (exit code 2) is bad input: a file, field or key that is wrong.
``PlanError`` is an input that cannot be planned (more workers than slots, a dependency cycle). Runtime failures
(``RedisUnavailable``, ``FencedWriteRefused``, ``BudgetExceeded``) carry the key or resource involved.
``TaskFailed`` is a control signal a task handler raises to fail its task with a message, like arq's ``Retry``.
"""

from __future__ import annotations


class CortexError(Exception):
    """Base of every error Cortex raises on purpose."""

    exit_code: int = 1


class InputError(CortexError):
    """Bad user input: names the source (file or argument), the field, the problem and what to do."""

    exit_code = 2

    def __init__(self, source: str, problem: str, *, field: str | None = None, hint: str | None = None) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        self.hint = hint
        where = f"{source}: {field}" if field else source
        message = f"{where}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class PlanError(InputError):
    """Inputs that parse but cannot form a plan: the reason says which constraint fails."""


class RedisUnavailable(CortexError):
    """Redis could not be reached after bounded retries."""

    exit_code = 3


class FencedWriteRefused(CortexError):
    """A write carried a fencing token older than the newest one issued for its resource."""

    def __init__(self, resource: str, token: int) -> None:
        self.resource = resource
        self.token = token
        super().__init__(f"write to {resource!r} with fencing token {token} refused: a newer holder exists")


class LeadershipLost(CortexError):
    """This coordinator no longer holds the run's leadership lease and must step down."""

    exit_code = 4


class BudgetExceeded(CortexError):
    """A token reservation would exceed an allocation at some level of the ledger."""

    def __init__(self, level: str, requested: int, remaining: int) -> None:
        self.level = level
        self.requested = requested
        self.remaining = remaining
        super().__init__(f"reservation of {requested} tokens exceeds {level} ({remaining} remaining)")


class TaskSkipped(Exception):
    """Raised by a task handler when its task cannot apply here (a tool that is optional by design is absent):
    the task ends ``skipped`` with the reason, not failed, and is not retried."""


class TaskFailed(Exception):
    """Raised by a task handler to fail its task with a message; the retry policy decides what happens next."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)
