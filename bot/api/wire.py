"""What travels between the service API and its clients: refusals as JSON with the HTTP
status they map to, and back into the same runtime.errors class on the client's side, so a
person sees the same message and exit code whichever door they used."""

from __future__ import annotations

from typing import Any

from runtime import errors

PREFIX = "/api/v1"

# The first class in an error's MRO found here decides its HTTP status.
_STATUS: dict[type[errors.AcpError], int] = {
    errors.AlreadyDecided: 200,
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.ScopeMissing: 403,
    errors.ImpersonationRefused: 403,
    errors.PolicyDenied: 403,
    errors.UnknownPerson: 403,
    errors.UnknownJob: 404,
    errors.InvalidTransition: 409,
    errors.ApprovalMismatch: 409,
    errors.PublishConflict: 409,
    errors.AuditChainBroken: 409,
}


def status_for(error: errors.AcpError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 422


def error_body(error: errors.AcpError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": type(error).__name__,
        "message": error.message,
        "hint": error.hint,
        "exit_code": error.exit_code,
    }
    if isinstance(error, errors.PolicyDenied):
        body["rule_ids"] = error.rule_ids
    if isinstance(error, errors.AuditChainBroken):
        body["seq"] = error.seq
    return body


def error_from(body: dict[str, Any]) -> errors.AcpError:
    """The refusal a response carried, as the class the service raised (AcpError if unknown)."""
    cls = getattr(errors, str(body.get("error", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.AcpError)):
        cls = errors.AcpError
    message, hint = str(body.get("message", "the service refused")), body.get("hint")
    if issubclass(cls, errors.PolicyDenied):
        error: errors.AcpError = cls(message, rule_ids=body.get("rule_ids"), hint=hint)
    elif issubclass(cls, errors.AuditChainBroken):
        error = cls(message, seq=body.get("seq"), hint=hint)
    else:
        error = cls(message, hint=hint)
    if cls is errors.AcpError and isinstance(body.get("exit_code"), int):
        error.exit_code = body["exit_code"]
    return error
