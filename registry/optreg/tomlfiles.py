"""TOML in and out: syntax errors as :class:`~optreg.SpecError` with a position, and writing with tomli-w."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

import tomli_w

from optreg.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["dump_toml", "parse_toml"]

_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_toml(text: str, *, file: str | None = None) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a :class:`SpecError` with line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = getattr(exc, "lineno", None)
        column = getattr(exc, "colno", None)
        match = _POSITION.search(message)
        if match and line is None:
            line, column = int(match.group(1)), int(match.group(2))
        reason = _POSITION.sub("", getattr(exc, "msg", message)).strip()
        where = f"line {line}, column {column}" if line is not None else "unknown position"
        raise SpecError(f"TOML syntax error at {where}: {reason}", path="$", file=file) from None


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain data (what :func:`optreg.convert.spec_to_dict` gives)."""
    return tomli_w.dumps(data)
