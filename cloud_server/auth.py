"""Token auth: every call must carry ``authorization: Bearer <token>`` metadata.

Health checks (``grpc.health.v1.Health``) are exempt so that orchestrators can probe the server
without the secret. Tokens are compared in constant time.
"""
from __future__ import annotations

import hmac
import os
from typing import Callable, Iterable

import grpc

from splitinfer.tokens import TokenFileError, read_tokens, valid_token

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def load_tokens(tokens: Iterable[str] = (), token_file: str | None = None,
                env: str = "SPLITINFER_TOKEN") -> list[str]:
    """Tokens from arguments, a token file (``splitinfer.tokens``: one per line, lines starting
    with ``#`` are comments) and the environment variable. Raises TokenFileError for a token
    that cannot travel in a header or an unreadable file."""
    out = []
    for t in tokens:
        t = (t or "").strip()
        if t and not valid_token(t):
            raise TokenFileError("a --token is printable ASCII without spaces")
        if t:
            out.append(t)
    if token_file:
        out.extend(read_tokens(token_file))
    if os.environ.get(env, "").strip():
        t = os.environ[env].strip()
        if not valid_token(t):
            raise TokenFileError(f"${env} is printable ASCII without spaces")
        out.append(t)
    return list(dict.fromkeys(out))


def _metadata_value(metadata, key: str) -> str | None:
    for item in metadata or ():
        k, v = (item.key, item.value) if hasattr(item, "key") else item
        if k.lower() == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid bearer token with UNAUTHENTICATED."""

    def __init__(self, tokens: Iterable[str], on_denied: Callable[[str, str], None] | None = None,
                 exempt: tuple[str, ...] = EXEMPT_PREFIXES):
        self._tokens = [t.encode() for t in tokens]
        if not self._tokens:
            raise ValueError("token auth needs at least one token")
        self._exempt = exempt
        self._on_denied = on_denied

    def check(self, header: str | None) -> str | None:
        """None when the header is valid, otherwise why not."""
        if not header:
            return "missing authorization metadata (expected 'authorization: Bearer <token>')"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "malformed authorization metadata (expected 'Bearer <token>')"
        given = token.strip().encode()
        if any(hmac.compare_digest(given, t) for t in self._tokens):
            return None
        return "invalid token"

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self._exempt):
            return handler
        why = self.check(_metadata_value(handler_call_details.invocation_metadata, "authorization"))
        if why is None:
            return handler
        if self._on_denied is not None:
            self._on_denied(method, why)
        return _deny(handler, why)


def _deny(handler, why: str):
    async def abort(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    kind = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}
    make = kind[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
