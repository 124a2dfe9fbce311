"""Checks of what clients and operators hand the server: model names in requests (bounded, echoed
only as a prefix) and the TLS key pair at startup (a mismatch named before binding)."""
from __future__ import annotations

import ssl
from pathlib import Path

import grpc

#: Longest model name a request may carry (repository names are far shorter).
MAX_MODEL_NAME = 128
#: Characters of a client-sent name echoed in an error message.
ECHO_CHARS = 64


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """``repr`` of a client-sent string, cut to a prefix (an error message never grows with it)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def unknown_model(name: str, served) -> tuple[grpc.StatusCode, str]:
    """(status, message) for a request naming a model that is not served: INVALID_ARGUMENT for
    a name over MAX_MODEL_NAME characters, NOT_FOUND otherwise."""
    if len(name) > MAX_MODEL_NAME:
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"model name {echo(name)} is longer than {MAX_MODEL_NAME} characters")
    listed = ", ".join(sorted(served)) or "none"
    return grpc.StatusCode.NOT_FOUND, f"unknown model {echo(name)} (served: {listed})"


class TlsConfigError(ValueError):
    """A TLS certificate, key or CA file the server cannot use."""


def check_tls(cert: str | None, key: str | None, client_ca: str | None = None) -> None:
    """Raise TlsConfigError naming what is wrong with the TLS files (both or neither of cert and
    key, readable PEM, the key matching the certificate, a loadable client CA)."""
    if not (cert or key):
        if client_ca:
            raise TlsConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return
    if not (cert and key):
        raise TlsConfigError("TLS needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", client_ca)):
        if path and not Path(path).is_file():
            raise TlsConfigError(f"{flag} {path}: no such file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key, password=lambda: b"")  # never prompt
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or str(e)
        if "KEY_VALUES_MISMATCH" in str(e) or reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(f"--tls-key {key} is not the private key of --tls-cert {cert} "
                                 "(the key and certificate do not match)") from None
        raise TlsConfigError(f"cannot use --tls-cert {cert} with --tls-key {key}: {reason} "
                             "(PEM certificate chain and unencrypted PEM private key expected)") from None
    except OSError as e:
        raise TlsConfigError(f"cannot read the TLS files: {e}") from None
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as e:
            raise TlsConfigError(f"--tls-client-ca {client_ca}: not a PEM CA certificate "
                                 f"({getattr(e, 'reason', None) or e})") from None
