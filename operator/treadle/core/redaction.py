"""What may leave a worker in an error message: status, Events and logs are read by people who
may not read the Secrets and URLs a task used (SPEC, Limits and bad input).  URL user-info and
query strings are cut, bearer tokens and `password=...`-like pairs are masked, and the
message is bounded."""

from __future__ import annotations

import re

MAX_ERROR_CHARS = 2048
MASK = "***"

_URL = re.compile(
    # user-info runs to the authority's last `@`: a password holding `@` is cut whole
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#]*@)?(?P<rest>[^\s'\"<>]*)"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{8,}")
_ASSIGNED = re.compile(
    r"(?i)\b(api[-_]?key|access[-_]?token|token|password|passwd|secret)(=)[^\s&,;'\"]+"
)


def _url(match: re.Match[str]) -> str:
    rest = match.group("rest")
    cut = rest.split("?", 1)[0].split("#", 1)[0]
    userinfo = f"{MASK}@" if match.group("userinfo") else ""
    return f"{match.group('scheme')}{userinfo}{cut}{'?' + MASK if cut != rest else ''}"


def redact(message: str, max_chars: int | None = MAX_ERROR_CHARS) -> str:
    """The message with URL credentials and query strings cut and credential values masked,
    and shortened to `max_chars` (None: kept whole)."""
    redacted = _URL.sub(_url, message)
    for pattern in (_SCHEME_TOKEN, _ASSIGNED):
        redacted = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", redacted)
    if max_chars is not None and len(redacted) > max_chars:
        redacted = redacted[:max_chars] + f"... ({len(redacted) - max_chars} more)"
    return redacted
