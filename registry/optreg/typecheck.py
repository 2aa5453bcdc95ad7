"""Type checks of spec options given in Python, with the converter's rules and messages.

The converter checks TOML values while it structures them; a spec class called directly
(``AdamWSpec(lr="1e-3")``) gets the same checks here, through the spec metaclass: booleans
are not numbers, floats are not integers, strings are not numbers, floats are finite,
``Literal`` choices are exact, and nested arrays and tables are checked element by element.
A wrong value raises :class:`~optreg.FieldTypeError` naming the field (and the element).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from optreg.specs import FieldTypeError, FieldValueErrors

__all__ = ["check_options", "type_problem"]

#: Resolved field types per spec class (``None``: the annotations cannot be resolved, nothing is checked).
_HINTS: dict[type, dict[str, Any] | None] = {}


def _hints(cls: type) -> dict[str, Any] | None:
    if cls not in _HINTS:
        from optreg.convert import field_types

        try:
            _HINTS[cls] = field_types(cls) if attrs.has(cls) else None
        except Exception:  # noqa: BLE001 - an annotation only a type checker can resolve: leave it unchecked
            _HINTS[cls] = None
    return _HINTS[cls]


def check_options(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``cls(**kwargs)`` with every option's type checked; lists given for tuple fields become
    tuples. Raises :class:`FieldTypeError` (several: :class:`FieldValueErrors`) naming each bad field."""
    hints = _hints(cls)
    if not hints:
        return kwargs
    out = dict(kwargs)
    problems: list[FieldTypeError] = []
    for name, value in kwargs.items():
        tp = hints.get(name)
        if tp is None:
            continue
        problem = type_problem(value, tp)
        if problem is not None:
            index, message = problem
            problems.append(FieldTypeError(name, message, index))
        elif isinstance(value, list) and _wants_tuple(tp):
            out[name] = _as_tuples(value)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise FieldValueErrors(list(problems))
    return out


def _wants_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) is tuple:
        return True
    return any(typing.get_origin(m) is tuple for m in typing.get_args(tp)) if typing.get_args(tp) else False


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def type_problem(value: Any, tp: Any) -> tuple[int | str | None, str] | None:
    """``None`` when ``value`` fits the annotation ``tp``; else ``(element index or None, message)``."""
    from optreg.convert import (
        _got,
        _is_hetero_tuple,
        _is_homo_sequence,
        _is_literal,
        _is_mapping,
        _is_union,
        describe_type,
    )

    def fail() -> tuple[None, str]:
        hint = ""
        if isinstance(value, str) and tp in (float, int):
            try:
                float(value)
                hint = f" (pass a number: {value})"
            except ValueError:
                pass
        return None, f"expected {describe_type(tp)}, got {_got(value)}{hint}"

    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return fail()
        if not math.isfinite(value):
            return None, f"expected a finite number, got {value!r}"
        return None
    if tp is int:
        return fail() if isinstance(value, bool) or not isinstance(value, int) else None
    if tp is bool or tp is str:
        return None if isinstance(value, tp) else fail()
    if tp is type(None):
        return None if value is None else fail()
    if _is_literal(tp):
        ok = any(type(a) is type(value) and a == value for a in typing.get_args(tp))
        return None if ok else (None, f"expected {describe_type(tp)}, got {_got(value)}")
    if _is_union(tp):
        members = typing.get_args(tp)
        results = [type_problem(value, m) for m in members]
        if any(r is None for r in results):
            return None
        real = [r for m, r in zip(members, results) if m is not type(None)]
        return real[0] if len(real) == 1 else (None, f"expected {describe_type(tp)}, got {_got(value)}")
    if _is_hetero_tuple(tp) or _is_homo_sequence(tp):
        if not isinstance(value, (list, tuple, frozenset, set)) or isinstance(value, str):
            return fail()
        args = typing.get_args(tp)
        if _is_hetero_tuple(tp):
            if len(value) != len(args):
                return None, f"expected {describe_type(tp)}, got {len(value)} item{'s' * (len(value) != 1)}"
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        for i, (item, item_type) in enumerate(zip(value, item_types)):
            inner = type_problem(item, item_type)
            if inner is not None:
                return i, inner[1]
        return None
    if _is_mapping(tp):
        if not isinstance(value, Mapping):
            return None, f"expected a table, got {_got(value)}"
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        for key, item in value.items():
            inner = type_problem(key, key_type) or type_problem(item, value_type)
            if inner is not None:
                return str(key), inner[1]
        return None
    if isinstance(tp, type):
        if isinstance(value, tp):
            return None
        return None, f"expected {describe_type(tp)}, got {_got(value)}"
    return None  # an annotation this checker does not know: not checked
