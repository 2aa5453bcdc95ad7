"""TOML in and out: syntax errors as :class:`~optreg.SpecError` that point at the line, and writing with tomli-w.

A syntax error names the line and column, quotes the line with a caret under the column, and
says more where tomllib's message is terse: a duplicate key is named (with the line that set it
first), an unclosed array or inline table points at the line that opened it.
"""

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

_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def parse_toml(text: str, *, file: str | None = None) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a :class:`SpecError` that names and quotes the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(syntax_error_message(exc, text), path="$", file=file) from None
    except RecursionError:  # the parser recurses per nesting level: a spec is never that deep
        raise SpecError("TOML nested too deeply (arrays or tables inside each other by the thousand)", path="$",
                        file=file) from None


def syntax_error_message(exc: Exception, text: str) -> str:
    """What went wrong, where (line, column, the line quoted with a caret) and, where it helps, why."""
    message = str(exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    match = _POSITION.search(message)
    if line is None and match and match.group(1):
        line, column = int(match.group(1)), int(match.group(2))
    reason = _POSITION.sub("", getattr(exc, "msg", message)).strip()
    lines = text.splitlines()
    if line is None or not 1 <= line <= len(lines) + 1:
        if "end of document" in message and lines:  # a value left open at the end of the file
            line, column = len(lines), len(lines[-1]) + 1
        else:
            return f"TOML syntax error: {reason}"
    quoted = lines[line - 1] if line <= len(lines) else ""
    reason += _explain(reason, lines, line, quoted)
    out = [f"TOML syntax error at line {line}, column {column}: {reason}"]
    out.append(f"    {line} | {quoted}")
    out.append(f"    {' ' * len(str(line))} | {' ' * max((column or 1) - 1, 0)}^")
    return "\n".join(out)


def _key_of(line_text: str) -> str | None:
    match = _KEY.match(line_text)
    return match.group(1).strip().strip("\"'") if match else None


def _explain(reason: str, lines: list[str], line: int, quoted: str) -> str:
    if reason.startswith("Cannot overwrite a value") or reason.startswith("Cannot mutate"):
        key = _key_of(quoted)
        if key is None:
            return ""
        first = next(
            (i + 1 for i in range(line - 2, -1, -1) if _key_of(lines[i]) == key or lines[i].strip().startswith("[")),
            None,
        )
        if first is not None and _key_of(lines[first - 1]) == key:
            return f": key {key!r} is set twice (first at line {first}); a key may appear once per table"
        return f": key {key!r} is already defined; a key may appear once per table"
    if reason.startswith("Cannot declare"):
        header = quoted.strip() or "this table"
        return f": {header} appears twice; a table may be declared once (merge the two)"
    if reason == "Illegal character '\\n'" and (quoted.count('"') % 2 or quoted.count("'") % 2):
        return ": a string is not closed on this line"
    if reason.startswith("Unclosed"):
        opener = "[" if "array" in reason else "{"
        closer = "]" if opener == "[" else "}"
        depth = 0
        for i in range(min(line, len(lines)) - 1, -1, -1):
            text = lines[i].split("#", 1)[0]
            depth += text.count(opener) - text.count(closer)
            if depth > 0 and not text.lstrip().startswith("["):
                return f": the {'array' if opener == '[' else 'inline table'} opened at line {i + 1} " \
                       f"({lines[i].strip()!r}) is not closed with {closer!r}"
            if depth > 0:
                break
    return ""


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain data (what :func:`optreg.convert.spec_to_dict` gives)."""
    return tomli_w.dumps(data)
