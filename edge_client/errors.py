"""The edge client's errors: a failed call (``ClassifyError``) and a stream that could not be
completed (``StreamError``)."""
from __future__ import annotations

import grpc


class ClassifyError(RuntimeError):
    """A call failed with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class StreamError(RuntimeError):
    """A stream could not be completed (a fatal status, or no progress for too long)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, unanswered: int = 0):
        super().__init__(message)
        self.code = code
        self.unanswered = unanswered
