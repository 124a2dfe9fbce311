"""The bearer-token file format, one definition for the server (``serve --token-file``) and the
edge client (``stream --token-file``).

One token per line; surrounding whitespace is stripped; blank lines and lines *starting* with
``#`` (after leading whitespace) are comments. A ``#`` inside a token is part of it
(``S3cr3t#2024-rotated`` is one token). A token is printable ASCII without spaces (it travels in
an HTTP/2 header): anything else is refused with the line number, never sent.
"""
from __future__ import annotations

from pathlib import Path


class TokenFileError(ValueError):
    """A token file that cannot be used (unreadable, a malformed line, no token where one is needed)."""


def valid_token(token: str) -> bool:
    return bool(token) and all(33 <= ord(ch) <= 126 for ch in token)


def parse_tokens(text: str, source: str = "token file") -> list[str]:
    """The tokens of a token file's text (see the module docstring)."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not valid_token(line):
            raise TokenFileError(f"{source}, line {i}: a token is printable ASCII without spaces "
                                 "(one token per line; '#' starts a comment only at the start of a line)")
        out.append(line)
    return out


def read_tokens(path: str | Path) -> list[str]:
    """Every token of a token file (the server accepts any of them)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {path}: {e}") from None
    return parse_tokens(text, str(path))


def read_token(path: str | Path) -> str:
    """The one token a client sends: the file's first token (later lines may hold the tokens a
    server accepts during a rotation; a client sends exactly one)."""
    tokens = read_tokens(path)
    if not tokens:
        raise TokenFileError(f"the token file {path} holds no token (one per line; lines starting "
                             "with '#' are comments)")
    return tokens[0]
