"""What the plugin prints of data others wrote (task output, logs, errors) cannot drive the
user's terminal: control characters are shown, not sent (kubectl does the same since
CVE-2021-25743).  Tabs and newlines stay; ESC shows as `^[`, DEL as `^?`, C1 codes as `\\u0080`."""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"^{chr(code ^ 0x40)}" if code < 0x20 or code == 0x7F else f"\\u{code:04x}"


def safe(text: str) -> str:
    """`text` with every control character but tab and newline made visible."""
    return _CONTROL.sub(_shown, text)


def safe_strings(value: Any) -> Any:
    """A JSON value with every string in it `safe` (keys too)."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {safe(str(key)): safe_strings(child) for key, child in value.items()}
    if isinstance(value, list):
        return [safe_strings(child) for child in value]
    return value
