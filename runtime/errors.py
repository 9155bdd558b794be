"""Every refusal a person can see, as one exception hierarchy.

Front doors render these (message, then hint); they never invent their own wording.
Each class says when it is raised. Messages must never carry a secret value.
"""

from __future__ import annotations


class AcpError(Exception):
    """Base of every error the control plane reports to a person."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


# --- bad input -------------------------------------------------------------


class BadRequest(AcpError):
    """Raised when request text cannot become a job (empty, too large, malformed)."""

    exit_code = 2


class UnknownJobType(BadRequest):
    """Raised when a request names a job type the runtime does not have."""


class UnknownTarget(BadRequest):
    """Raised when a request names a target the policy does not define."""


class SqlWriteRefused(BadRequest):
    """Raised at intake when a SQL request is a statement other than one read, or asks in
    words for a change: SQL jobs only read, so it is refused for what it is."""


class UnknownJob(AcpError):
    """Raised when a job id does not exist."""

    exit_code = 3


class UnknownPerson(AcpError):
    """Raised when an identity from a front door maps to nobody in the policy."""

    exit_code = 4


# --- authentication (the service API's doors) --------------------------------


class Unauthenticated(AcpError):
    """Raised when a caller of the service API proves no identity: no or an unknown, revoked
    or expired token, a socket peer whose uid maps to nobody."""

    exit_code = 19


class ScopeMissing(AcpError):
    """Raised when an API token lacks the scope an action needs (a submit token approving)."""

    exit_code = 20


class ImpersonationRefused(AcpError):
    """Raised when `--as` names someone other than the authenticated caller and the policy
    does not allow impersonation (only the demo policy does)."""

    exit_code = 21


class ServiceUnavailable(AcpError):
    """Raised by the `acp` client when the service is not running or cannot be reached."""

    exit_code = 22


# --- policy ----------------------------------------------------------------


class PolicyFileError(AcpError):
    """Raised at load when a policy file is malformed; names the file and line."""

    exit_code = 5


class PolicyDenied(AcpError):
    """Raised when the policy refuses an action; carries the rule ids it used."""

    exit_code = 6

    def __init__(self, message: str, *, rule_ids: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.rule_ids = rule_ids or []


class ApprovalRefused(PolicyDenied):
    """Raised when someone may not approve or reject this job (four-eyes, not an approver)."""


class ApprovalExpired(PolicyDenied):
    """Raised when the approval request has passed its expiry."""


class ApprovalMismatch(AcpError):
    """Raised when an approval names a pending change other than the one now pending."""

    exit_code = 7


class AlreadyDecided(AcpError):
    """Raised when an approve, reject or answer arrives for a job that is past that step."""

    exit_code = 0


class InvalidTransition(AcpError):
    """Raised when an action does not fit the job's current state."""

    exit_code = 8


# --- sandbox and tools -----------------------------------------------------


class SandboxViolation(AcpError):
    """Raised when a tool call reaches outside the job's grant (path, network, tool)."""

    exit_code = 9


class ToolNotGranted(SandboxViolation):
    """Raised when a job calls a tool its grant does not include."""


class ReadOnlyViolation(SandboxViolation):
    """Raised when a SQL statement could write, escape or run something the policy denies."""


class NotAReplica(AcpError):
    """Raised when a database target is neither a replica nor a role without write privileges."""

    exit_code = 15


class SandboxUnavailable(AcpError):
    """Raised when bubblewrap (or git) is missing or cannot create a sandbox here."""

    exit_code = 10


# --- models ------------------------------------------------------------------


class BudgetExceeded(AcpError):
    """Raised before a model call that the job's or the team's budget cannot pay for."""

    exit_code = 13


class ModelUnavailable(AcpError):
    """Raised when a route's model and every fallback failed, or its key is not set."""

    exit_code = 14


# --- the database ------------------------------------------------------------


class SchemaOutOfDate(AcpError):
    """Raised when a database is at an older schema revision than this code (or was made
    before versioned migrations), and the command may not upgrade it: `acp db upgrade` does."""

    exit_code = 16


class SchemaFromTheFuture(AcpError):
    """Raised when a database is at a schema revision this code does not know: a newer
    version upgraded it. Nothing is changed."""

    exit_code = 17


class SchemaUpgradeFailed(AcpError):
    """Raised when an upgrade or downgrade cannot run: a migration failed (and was rolled
    back), another instance held the upgrade lock past the deadline, or the target is refused."""

    exit_code = 18


# --- publish and audit -----------------------------------------------------


class GitCommandFailed(AcpError):
    """Raised when a git command the runtime depends on fails unexpectedly."""


class PublishConflict(AcpError):
    """Raised when a job's change no longer merges cleanly onto its base branch."""

    exit_code = 11


class AuditChainBroken(AcpError):
    """Raised by verify when an event was edited, deleted, reordered or an artifact changed,
    or when the log no longer extends a signed checkpoint (rewritten, truncated, forked), or a
    checkpoint's signature fails."""

    exit_code = 12

    def __init__(self, message: str, *, seq: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.seq = seq
