"""Treadle's Lua scripts: one `.lua` file each beside this module, read once at import.

A script's header names its `KEYS:` and `ARGV:` in order, and may say it `needs:` a fragment
(another file, put before its body).  It is called with mappings by those names (`Bound`), so
no call site can pass them in another order or leave one out, and a unit test checks that each
body reads exactly the KEYS and ARGV its header declares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Script:
    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    source: str
    """The body with its fragments, as Redis runs it."""

    def ordered(
        self, keys: Mapping[str, str], args: Mapping[str, Any]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV in the script's order; TypeError when a name is missing or unknown."""
        for kind, declared, given in (("KEYS", self.keys, keys), ("ARGV", self.args, args)):
            if set(given) != set(declared):
                raise TypeError(
                    f"script {self.name}: {kind} must be {', '.join(declared)}; "
                    f"got {', '.join(given)}"
                )
        return [keys[name] for name in self.keys], [args[name] for name in self.args]


class Bound:
    """A script registered with one client (redis-py calls it by hash, loading it if Redis
    has not got it)."""

    def __init__(self, script: Script, client: aioredis.Redis) -> None:
        self.script = script
        self._call = client.register_script(script.source)

    async def __call__(
        self, keys: Mapping[str, str], args: Mapping[str, Any], client: Any = None
    ) -> Any:
        ordered_keys, ordered_args = self.script.ordered(keys, args)
        return await self._call(keys=ordered_keys, args=ordered_args, client=client)


def _names(header: str, text: str) -> tuple[str, ...]:
    found = re.search(rf"^-- {header}:(.*)$", text, re.MULTILINE)
    return tuple(n.strip() for n in found.group(1).split(",") if n.strip()) if found else ()


def _load() -> dict[str, Script]:
    files = {
        entry.name: entry.read_text()
        for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".lua")
    }
    scripts: dict[str, Script] = {}
    for filename, text in sorted(files.items()):
        if not re.search(r"^-- KEYS:", text, re.MULTILINE):
            continue  # a fragment
        fragments = [files[name] for name in _names("needs", text)]
        name = filename.removesuffix(".lua")
        source = "".join(fragments) + text
        scripts[name] = Script(name, _names("KEYS", text), _names("ARGV", text), source)
    return scripts


SCRIPTS = _load()
FINISH = SCRIPTS["finish"]
REAP = SCRIPTS["reap"]
STORE_LOG = SCRIPTS["store_log"]
BREAKER_ADMIT = SCRIPTS["breaker_admit"]
BREAKER_RECORD = SCRIPTS["breaker_record"]
BUCKET_TAKE = SCRIPTS["bucket_take"]
