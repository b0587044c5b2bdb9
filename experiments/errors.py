"""Errors raised by services; views turn them into 4xx answers with the message as written."""


class ServiceError(Exception):
    """A request the platform refuses; the message says what to fix."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class InvalidState(ServiceError):
    def __init__(self, message: str):
        super().__init__(message, status=409)
