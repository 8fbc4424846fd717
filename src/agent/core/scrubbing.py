"""Secrets taken out of messages in every form a library may print them in.

A client library that fails on a secret rarely prints it as it was: h11 shows a header
value as a bytes literal (CR LF escaped), httpx a query string URL-encoded, requests a Basic
authorization header base64-encoded, a traceback a `repr`. So each secret is removed in all
of those forms, and in pieces when it spans lines. What is left has its control characters
escaped (no forged log lines) and is capped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

MAX_MESSAGE_CHARS = 500
SCRUBBED = "***"
# Shorter pieces of a secret (one line of it, a base64 run of it) are too likely in any text.
MIN_PIECE_CHARS = 6
_URL_SAFE_SETS = ("", "/", "!$&'()*+,;=:/?@~", "-._~")

_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization)(\s*[=:]\s*)(\S+)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def forms(secret: str) -> set[str]:
    """Every spelling of `secret` a message might hold."""
    found = set(_escaped(secret)) | set(_url_encoded(secret)) | set(_base64(secret))
    pieces = [p for p in re.split(r"[\r\n]+", secret) if len(p) >= MIN_PIECE_CHARS]
    if len(pieces) > 1:
        found |= {form for piece in pieces for form in _escaped(piece)}
    return {form for form in found if form}


def _escaped(secret: str) -> Iterator[str]:
    yield secret
    yield repr(secret)[1:-1]
    yield ascii(secret)[1:-1]
    yield json.dumps(secret)[1:-1]
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    yield secret.replace("'", "\\'")
    yield secret.replace('"', '\\"')
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = secret.encode(encoding)
        except UnicodeEncodeError:
            continue
        yield repr(raw)[2:-1]
        yield raw.decode("latin-1")


def _url_encoded(secret: str) -> Iterator[str]:
    for safe in _URL_SAFE_SETS:
        for encoded in (quote(secret, safe=safe), quote_plus(secret, safe=safe)):
            yield encoded
            yield re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded)


def _base64(secret: str) -> Iterator[str]:
    """The base64 runs that encode `secret` wherever it sits in a longer value."""
    raw = secret.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            start = 4 if offset else 0  # the first quantum also encodes the bytes before
            whole = (offset + len(raw)) // 3 * 4  # the last partial quantum depends on what follows
            piece = encoded[start:whole]
            if len(piece) >= MIN_PIECE_CHARS:
                yield piece
            if offset == 0:
                yield encoded
                yield encoded.rstrip("=")


def scrub_message(
    message: str,
    secrets: Iterable[str] = (),
    max_chars: int | None = MAX_MESSAGE_CHARS,
    one_line: bool | None = None,
) -> str:
    """`message` without any form of `secrets` nor `password=...`, capped.

    A capped message (the default) is also made one line: CR, LF and other control
    characters are escaped. Uncapped text (a log line's traceback) keeps its lines.
    """
    if not message:  # nothing to scrub; spelling a secret every way costs a check's CPU
        return message
    spelled = {form for secret in secrets if secret for form in forms(secret)}
    for form in sorted(spelled, key=len, reverse=True):
        message = message.replace(form, SCRUBBED)
    message = _SECRET_ASSIGNMENT.sub(lambda m: f"{m[1]}{m[2]}{SCRUBBED}", message)
    if one_line if one_line is not None else max_chars is not None:
        message = _CONTROL.sub(lambda m: repr(m[0])[1:-1], message)
    return message[:max_chars]
