"""Domain errors raised by services; the API maps each to its HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    """Input that is well-formed but not acceptable (422)."""

    status_code = 422


class BadRequest(ServiceError):
    status_code = 400


class Forbidden(ServiceError):
    status_code = 403


class TooLarge(ServiceError):
    """A request over a size limit (413): too many runs, too large a body."""

    status_code = 413
