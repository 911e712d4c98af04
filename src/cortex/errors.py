"""Every exception Cortex defines, and the exit codes the command line maps them to.

``CortexError`` is the base of errors a user can meet; each carries the ``exit_code`` the CLI ends with, and its
message says what was wrong, where, and what to do. The table ``EXIT_CODES`` is the only list of exit codes
(the README and ``cortex --help`` print it). ``TaskFailed`` and ``TaskSkipped`` are control signals a task
handler raises, like arq's ``Retry``; they never reach the command line. This module imports nothing of Cortex:
everything else may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol


class ExitCode(IntEnum):
    """What a ``cortex`` command's exit status means. One meaning per code."""

    OK = 0
    TASKS_FAILED = 1
    BAD_INPUT = 2
    REDIS_UNREACHABLE = 3
    STEPPED_DOWN = 4
    NOT_FOUND = 5
    PREFLIGHT_FAILED = 6
    START_FAILED = 7
    RUN_ERROR = 8
    INTERNAL_ERROR = 70
    INTERRUPTED = 130


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "succeeded (a run: every required task succeeded)",
    ExitCode.TASKS_FAILED: "a required task failed (cortex chaos: work lost or duplicated)",
    ExitCode.BAD_INPUT: "bad input: the message names the file, field, option or variable",
    ExitCode.REDIS_UNREACHABLE: "Redis unreachable, or the embedded server did not start",
    ExitCode.STEPPED_DOWN: "another coordinator leads the run (stepped down, or not taken over)",
    ExitCode.NOT_FOUND: "not found: no such run, archive or asset",
    ExitCode.PREFLIGHT_FAILED: "pre-flight failed: nothing was started",
    ExitCode.START_FAILED: "a process or tool the run needs did not start (no heartbeat, no git)",
    ExitCode.RUN_ERROR: "the run broke (a bug, or Redis gone too long): report and archive say status error and why",
    ExitCode.INTERNAL_ERROR: "internal error: a bug in Cortex (the traceback is printed)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM): processes stopped, state 'aborted'",
}


def exit_code_table() -> str:
    """The exit codes as aligned text lines, for ``--help`` and the README."""
    return "\n".join(f"{int(code):>4}  {text}" for code, text in EXIT_CODES.items())


# ---------------------------------------------------------------------------------------------- user errors
class CortexError(Exception):
    """Base of every error Cortex raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


class InputError(CortexError):
    """Bad user input: names the source (file or argument), the field, the problem and what to do."""

    exit_code = ExitCode.BAD_INPUT

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


class NotFound(CortexError):
    """A named thing (run, archive, asset) does not exist where it was looked for."""

    exit_code = ExitCode.NOT_FOUND


class RunNotFound(NotFound):
    """The run has no plan in Redis (it ended, or never started there), or no state or archive on disk."""


class AssetNotFound(NotFound, LookupError):
    """No catalog asset with that id."""

    def __init__(self, asset_id: str) -> None:
        self.asset_id = asset_id
        super().__init__(f"no asset {asset_id!r}")


class RedisUnavailable(CortexError):
    """Redis could not be reached after bounded retries, or the embedded server could not start."""

    exit_code = ExitCode.REDIS_UNREACHABLE


class StartFailed(CortexError):
    """A process or tool the run needs did not start: a node agent exited, no heartbeat came, the plan's nodes
    did not register (cluster mode), git is missing for the demo's working copies."""

    exit_code = ExitCode.START_FAILED


class _Check(Protocol):
    name: str
    ok: bool
    detail: str


class PreflightFailed(CortexError):
    """A pre-flight check failed; nothing was started."""

    exit_code = ExitCode.PREFLIGHT_FAILED

    def __init__(self, checks: Sequence[_Check]) -> None:
        self.checks = list(checks)
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
        super().__init__(f"pre-flight failed, nothing started: {failed}")


class LeadershipLost(CortexError):
    """This coordinator does not lead the run (any more): it stepped down, or could not take the run over."""

    exit_code = ExitCode.STEPPED_DOWN


class RunErrored(CortexError):
    """The coordinator hit an error it cannot run on with; the run ended with a report and an archive that say
    ``status: error`` and the cause (``report``: where the report is, when it could be written)."""

    exit_code = ExitCode.RUN_ERROR

    def __init__(self, message: str, report: str | None = None) -> None:
        self.report = report
        super().__init__(message + (f"; report: {report}" if report else "; no report could be written"))


class RunInterrupted(CortexError):
    """The run was asked to stop (SIGINT/SIGTERM); its cleanup has run."""

    exit_code = ExitCode.INTERRUPTED


class ModelUnavailable(CortexError):
    """The configured model cannot be used: unknown provider, missing key, or blocked endpoint."""

    exit_code = ExitCode.BAD_INPUT


class ScriptError(CortexError):
    """The scripted model's script cannot be read, or has no turn left for the run."""

    exit_code = ExitCode.BAD_INPUT


# ------------------------------------------------------------------------------------ coordination
class FencedWriteRefused(CortexError):
    """A write carried a fencing token older than the newest one issued for its resource."""

    exit_code = ExitCode.STEPPED_DOWN

    def __init__(self, resource: str, token: int) -> None:
        self.resource = resource
        self.token = token
        super().__init__(f"write to {resource!r} with fencing token {token} refused: a newer holder exists")


class BudgetExceeded(CortexError):
    """A token reservation would exceed an allocation at some level of the ledger."""

    def __init__(self, level: str, requested: int, remaining: int) -> None:
        self.level = level
        self.requested = requested
        self.remaining = remaining
        super().__init__(f"reservation of {requested} tokens exceeds {level} ({remaining} remaining)")


class RemoteError(Exception):
    """A git remote could not be cloned, fetched or pushed (the message says which and why, its URL redacted)."""


class ManifestUnreadable(ValueError):
    """A manifest that does not parse: the reader turns it into a finding (file, line, message) and reads the
    repository's other manifests."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


class IllegalTransition(RuntimeError):
    """A move between task states that ``TRANSITIONS`` does not allow: a bug in the coordinator."""


class CycleFound(ValueError):
    """The edges contain a cycle; ``cycle`` lists its nodes, first node repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(" -> ".join(cycle))


# ----------------------------------------------------------------------------------------- catalog
class CatalogUnavailable(ConnectionError):
    """The catalog API did not answer and the cache has no copy of what was asked."""


class CatalogRejected(ValueError):
    """The catalog API refused the request (4xx): it is not retried or queued."""

    def __init__(self, status: int, detail: object) -> None:
        self.status = status
        super().__init__(f"catalog answered {status}: {detail}")


class ApiError(Exception):
    """A catalog API error answered with ``status`` and ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class AuthError(ApiError):
    """401 (no or unknown token) or 403 (token without the scope)."""


class BodyTooLarge(Exception):
    """A streamed request body went over the catalog's limit."""


# ----------------------------------------------------------------------------------- task signals
class TaskSkipped(Exception):
    """Raised by a task handler when its task cannot apply here (a tool that is optional by design is absent):
    the task ends ``skipped`` with the reason, not failed, and is not retried."""


class TaskFailed(Exception):
    """Raised by a task handler to fail its task with a message; the retry policy decides what happens next."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)
