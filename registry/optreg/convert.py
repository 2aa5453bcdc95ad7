"""The strict cattrs converter that turns TOML tables into spec objects, and back.

cattrs is lax by default (``"false"`` becomes True, ``3.7`` becomes 3, unknown
keys are dropped). optreg is strict: unknown keys are rejected with a "did you
mean", booleans are not numbers, floats are not integers, strings are not
numbers, floats must be finite, and every error carries the path of the field
(``$.optimizer.betas[1]``). Each :class:`~optreg.Registry` owns one converter;
its tagged unions (``OptimizerSpec`` and friends) are built from the names the
plugins registered.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError

from optreg.errors import format_path
from optreg.runspec import RunSpec
from optreg.specs import (
    FieldValueError,
    FieldValueErrors,
    OptimizerSpec,
    ParallelismSpec,
    SchedulerSpec,
    Spec,
    spec_fields,
)
from optreg.suggest import COMMON_KEYS
from optreg.suggest import did_you_mean as _did_you_mean

if TYPE_CHECKING:
    from typing import Protocol

    class Names(Protocol):
        """What the converter needs of a registry: names to classes, and the plugins' tables."""

        def lookup(self, kind: str, name: str) -> type[Spec] | None: ...
        def names(self, kind: str) -> list[str]: ...
        def unknown_name_message(self, kind: str, name: str) -> str: ...
        def tables(self) -> dict[str, type]: ...
        def table_clashes(self) -> dict[str, list[Any]]: ...

__all__ = ["describe_type", "make_converter", "spec_to_dict", "field_types"]

Path = tuple[str | int, ...]

KIND_BASES: dict[str, type[Spec]] = {
    "optimizer": OptimizerSpec,
    "scheduler": SchedulerSpec,
    "parallelism": ParallelismSpec,
}


class StructureErrors(Exception):
    """Errors found while structuring, each a ``(relative path, message)`` pair."""

    def __init__(self, errors: Sequence[tuple[Path, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{format_path(p)}: {m}" for p, m in self.errors))


def _fail(message: str, path: Path = ()) -> StructureErrors:
    return StructureErrors([(path, message)])


def flatten_errors(exc: BaseException, prefix: Path = ()) -> list[tuple[Path, str]]:
    """Walk cattrs' exception groups and our own errors into ``(path, message)`` pairs."""
    if isinstance(exc, StructureErrors):
        return [(prefix + p, m) for p, m in exc.errors]
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        out: list[tuple[Path, str]] = []
        for sub in exc.exceptions:
            step: Path = ()
            for note in getattr(sub, "__notes__", []):
                if hasattr(note, "name"):
                    step = (note.name,)
                elif hasattr(note, "index"):
                    step = (note.index,)
            out += flatten_errors(sub, prefix + step)
        return out
    if isinstance(exc, FieldValueErrors):
        return [e for sub in exc.errors for e in flatten_errors(sub, prefix)]
    if isinstance(exc, FieldValueError):
        extra: Path = (exc.field,) + ((exc.index,) if exc.index is not None else ())
        return [(prefix + extra, exc.message)]
    return [(prefix, str(exc) or type(exc).__name__)]


# ---------------------------------------------------------------- type helpers


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is Union or origin is types.UnionType


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _is_hetero_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) is not tuple:
        return False
    args = typing.get_args(tp)
    return bool(args) and not (len(args) == 2 and args[1] is Ellipsis)


def _is_homo_sequence(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, Sequence, typing.Sequence, frozenset, set)


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (dict, Mapping, typing.Mapping)


def describe_type(tp: Any) -> str:
    """A short human phrase for what a field accepts: ``a number``, ``one of 'a', 'b'``."""
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "nothing"
    if _is_literal(tp):
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        parts = [describe_type(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts)
    if _is_hetero_tuple(tp):
        args = typing.get_args(tp)
        if len(set(args)) == 1:
            return f"an array of {len(args)} {_plural(args[0])}"
        return "an array [" + ", ".join(describe_type(a) for a in args) + "]"
    if _is_homo_sequence(tp):
        return f"an array of {_plural(typing.get_args(tp)[0])}"
    if _is_mapping(tp):
        return "a table"
    if isinstance(tp, type) and issubclass(tp, Spec) and tp in KIND_BASES.values():
        return f"a table with a `type` naming a registered {tp.KIND}"
    if attrs.has(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    words = {float: "numbers", int: "integers", bool: "booleans", str: "strings"}
    if tp in words:
        return words[tp]
    if _is_hetero_tuple(tp) or _is_homo_sequence(tp):
        return "arrays (" + describe_type(tp) + ")"
    return "items (" + describe_type(tp) + ")"


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} item{'s' * (len(value) != 1)}"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a likely match exists (see :mod:`optreg.suggest`), else ``""``."""
    return _did_you_mean(word, choices)


def _key_hint(key: str, names: Sequence[str]) -> str:
    """The did-you-mean of an unknown key: close spellings and the names other libraries use (``learning_rate``)."""
    return _did_you_mean(key, names, COMMON_KEYS)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of an attrs class (works with ``from __future__ import annotations``).

    Resolved once and stored on the fields (``attrs.resolve_types``), so later lookups do not
    depend on the defining modules still being in ``sys.modules``.
    """
    if any(isinstance(f.type, str) for f in attrs.fields(cls)):
        attrs.resolve_types(cls)
    return {f.name: f.type for f in attrs.fields(cls)}


# ---------------------------------------------------------------- primitive hooks


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = f" (write it without quotes: {value})"
            except ValueError:
                pass
        raise _fail(f"expected a number, got {_got(value)}{hint}")
    if not math.isfinite(value):
        raise _fail(f"expected a finite number, got {value!r}")
    return float(value)


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f" (write {int(value)})"
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            hint = f" (write it without quotes: {value.strip()})"
        raise _fail(f"expected an integer, got {_got(value)}{hint}")
    return value


def _structure_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        hint = ""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            hint = f" (write it without quotes: {value.lower()})"
        raise _fail(f"expected true or false, got {_got(value)}{hint}")
    return value


def _structure_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"expected a string, got {_got(value)}")
    return value


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = typing.get_args(tp)
    for choice in allowed:
        if type(choice) is type(value) and choice == value:
            return choice
    names = [a for a in allowed if isinstance(a, str)]
    hint = did_you_mean(value, names) if isinstance(value, str) else ""
    raise _fail(f"expected one of {', '.join(repr(a) for a in allowed)}; got {_got(value)}{hint}")


# ---------------------------------------------------------------- the converter


def make_converter(registry: Names) -> cattrs.Converter:
    """Build the strict converter of ``registry`` (its tagged unions use the registered names)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook_factory(_is_union, lambda tp: _union_hook(conv, tp))
    conv.register_structure_hook_factory(_is_hetero_tuple, lambda tp: _hetero_tuple_hook(conv, tp))
    conv.register_structure_hook_factory(_is_homo_sequence, lambda tp: _sequence_hook(conv, tp))
    conv.register_structure_hook_factory(_is_mapping, lambda tp: _mapping_hook(conv, tp))
    where = _where_else(registry)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _class_hook(conv, cls, where))
    for kind, base in KIND_BASES.items():
        # Exact-match predicates: a plain register_structure_hook(base) would also catch subclasses.
        conv.register_structure_hook_func(
            lambda tp, base=base: tp is base, _tagged_union_hook(conv, registry, kind)
        )
    conv.register_structure_hook_func(lambda tp: tp is RunSpec, _run_spec_hook(conv, registry, where))
    return conv


def _where_else(registry: Names) -> Callable[[str, str], str]:
    """A function ``(key, kind) -> hint`` saying where else ``key`` is an option: ``warmup_steps`` under
    ``[optimizer]`` is a ``[scheduler]`` option. ``kind`` is the table it was found in (``""``: the top level)."""
    index: dict[str, list[tuple[str, str]]] = {}

    def build() -> None:
        for other, base in KIND_BASES.items():
            for name in registry.names(other):
                try:
                    cls = registry.lookup(other, name)
                except Exception:  # noqa: BLE001 - a registry without this kind: nothing to say
                    cls = None
                for f in spec_fields(cls) if cls is not None else ():
                    if f.name not in {b.name for b in spec_fields(base)}:
                        index.setdefault(f.name, []).append((other, name))
        for table, cls in registry.tables().items():
            for f in spec_fields(cls):
                index.setdefault(f.name, []).append((table, ""))

    def hint(key: str, kind: str) -> str:
        if not index:
            build()
        places = [(table, name) for table, name in index.get(key, []) if table != kind]
        if not places:
            return ""
        table = places[0][0]
        names = [name for t, name in places if t == table and name]
        example = f" (of {', '.join(repr(n) for n in names)})" if 0 < len(names) <= 3 else ""
        return f" (it is an option of [{table}]{example}: move it there)"

    return hint


def _run_spec_hook(
    conv: cattrs.Converter, registry: Names, where: Callable[[str, str], str]
) -> Callable[[Any, Any], RunSpec]:
    """A whole file: the core's keys as RunSpec fields, every other top-level table a plugin's registered one."""
    core_fields = [f for f in spec_fields(RunSpec) if f.name in RunSpec.CORE_KEYS]
    hints = field_types(RunSpec)

    def structure(value: Any, _: Any) -> RunSpec:
        if not isinstance(value, Mapping):
            raise _fail(f"expected a table, got {_got(value)}")
        tables = registry.tables()
        valid = [*RunSpec.CORE_KEYS, *sorted(tables)]
        errors: list[tuple[Path, str]] = []
        kwargs: dict[str, Any] = {}
        found: dict[str, Any] = {}
        clashed = registry.table_clashes()
        for key in value:
            if key in clashed:
                who = " and ".join(p.label for p in clashed[key])
                errors.append(((str(key),), f"the [{key}] table is registered by both {who}, so neither reads it; "
                                            "uninstall or disable one of them (OPTREG_DISABLE_PLUGINS)"))
            elif key not in valid:
                errors.append(((str(key),), f"unknown key {key!r}"
                                            f"{where(str(key), '') or did_you_mean(str(key), valid)}; "
                                            f"valid keys: {', '.join(valid)}"))
        for f in core_fields:
            if f.name in value:
                try:
                    kwargs[f.name] = conv.structure(value[f.name], hints[f.name])
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    errors += flatten_errors(exc, (f.name,))
            elif f.default is attrs.NOTHING:
                errors.append(((f.name,), f"required key is missing: expected {describe_type(hints[f.name])}"))
        for name, cls in tables.items():
            if name in value:
                try:
                    found[name] = conv.structure(value[name], cls)
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    errors += flatten_errors(exc, (name,))
        if errors:
            raise StructureErrors(errors)
        try:
            return RunSpec(**kwargs, tables=found, table_classes=dict(tables))
        except FieldValueError as exc:
            raise StructureErrors(flatten_errors(exc)) from None

    return structure


def _union_hook(conv: cattrs.Converter, tp: Any) -> Callable[[Any, Any], Any]:
    members = typing.get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        if value is None:
            if type(None) in members:
                return None
            raise _fail(f"expected {describe_type(tp)}, got nothing")
        real = [m for m in members if m is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message (with its hints) is the useful one
            return conv.structure(value, real[0])
        errors = []
        for member in real:
            try:
                return conv.structure(value, member)
            except Exception as exc:  # noqa: BLE001 - try the next member
                errors.append(flatten_errors(exc))
        # If exactly one member matched the value's shape, its nested errors are the useful ones.
        shaped = [e for e in errors if e and any(p for p, _ in e)]
        if len(shaped) == 1:
            raise StructureErrors(shaped[0])
        raise _fail(f"expected {describe_type(tp)}, got {_got(value)}")

    return structure


def _hetero_tuple_hook(conv: cattrs.Converter, tp: Any) -> Callable[[Any, Any], tuple]:
    args = typing.get_args(tp)

    def structure(value: Any, _: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(f"expected {describe_type(tp)}, got {_got(value)}")
        if len(value) != len(args):
            raise _fail(f"expected {describe_type(tp)}, got {len(value)} item{'s' * (len(value) != 1)}")
        errors: list[tuple[Path, str]] = []
        out = []
        for i, (item, item_type) in enumerate(zip(value, args, strict=True)):
            try:
                out.append(conv.structure(item, item_type))
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors += flatten_errors(exc, (i,))
        if errors:
            raise StructureErrors(errors)
        return tuple(out)

    return structure


def _sequence_hook(conv: cattrs.Converter, tp: Any) -> Callable[[Any, Any], Any]:
    (item_type, *_rest) = typing.get_args(tp) or (Any,)
    origin = typing.get_origin(tp)
    make = tuple if origin in (tuple, Sequence, typing.Sequence) else (frozenset if origin is frozenset else list)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _fail(f"expected {describe_type(tp)}, got {_got(value)}")
        errors: list[tuple[Path, str]] = []
        out = []
        for i, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type) if item_type is not Any else item)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors += flatten_errors(exc, (i,))
        if errors:
            raise StructureErrors(errors)
        return make(out)

    return structure


def _mapping_hook(conv: cattrs.Converter, tp: Any) -> Callable[[Any, Any], dict]:
    key_type, value_type = typing.get_args(tp) or (str, Any)

    def structure(value: Any, _: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _fail(f"expected a table, got {_got(value)}")
        errors: list[tuple[Path, str]] = []
        out = {}
        for key, item in value.items():
            try:
                k = conv.structure(key, key_type)
                out[k] = conv.structure(item, value_type) if value_type is not Any else item
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors += flatten_errors(exc, (str(key),))
        if errors:
            raise StructureErrors(errors)
        return out

    return structure


def _field_validator_errors(fields: Sequence[attrs.Attribute], values: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Every field's own validators (bounds) run on its value alone, so all bound errors are reported at
    once, beside the type errors; cross-field checks run when the instance is built."""
    errors: list[tuple[Path, str]] = []
    for f in fields:
        if f.validator is None or f.name not in values:
            continue
        try:
            f.validator(None, f, values[f.name])
        except (FieldValueError, FieldValueErrors) as exc:
            errors += flatten_errors(exc)
        except Exception:  # noqa: BLE001 - a validator that needs the instance runs when it is built
            pass
    return errors


def _class_hook(
    conv: cattrs.Converter, cls: type, where: Callable[[str, str], str] | None = None
) -> Callable[[Any, Any], Any]:
    fields = spec_fields(cls)
    hints = field_types(cls)
    names = [f.name for f in fields]
    is_optimizer = issubclass(cls, OptimizerSpec)
    kind = getattr(cls, "KIND", "") if issubclass(cls, Spec) else ""

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _fail(f"expected a table, got {_got(value)}")
        errors: list[tuple[Path, str]] = []
        for key in value:
            if key not in names:
                elsewhere = where(str(key), kind) if where is not None and kind else ""
                errors.append(
                    (
                        (str(key),),
                        f"unknown key {key!r}{elsewhere or _key_hint(str(key), names)}; "
                        f"valid keys: {', '.join(names) or '(none)'}",
                    )
                )
        kwargs: dict[str, Any] = {}
        for f in fields:
            if is_optimizer and f.name == "group_overrides":
                continue
            if f.name in value:
                try:
                    kwargs[f.name] = conv.structure(value[f.name], hints[f.name])
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    errors += flatten_errors(exc, (f.name,))
            elif f.default is attrs.NOTHING:
                errors.append(((f.name,), f"required key is missing: expected {describe_type(hints[f.name])}"))
        errors += _field_validator_errors(fields, kwargs)
        if errors:
            raise StructureErrors(errors)
        try:
            instance = cls(**kwargs)
        except (FieldValueError, FieldValueErrors) as exc:
            raise StructureErrors(flatten_errors(exc)) from None
        except (ValueError, TypeError) as exc:
            raise _fail(str(exc)) from None
        if is_optimizer and "group_overrides" in value:
            overrides = _structure_overrides(conv, instance, value["group_overrides"])
            instance = attrs.evolve(instance, group_overrides=overrides)
        return instance

    return structure


def _structure_overrides(conv: cattrs.Converter, spec: OptimizerSpec, raw: Any) -> tuple:
    from optreg.specs import GroupOverride

    target = spec.group_option_spec()
    target_cls = type(target)
    hints = field_types(target_cls)
    per_group = [f.name for f in spec_fields(target_cls) if f.metadata.get("per_group", True)]
    base: Path = ("group_overrides",)
    if not isinstance(raw, (list, tuple)):
        raise _fail(f"expected an array of tables, got {_got(raw)}", base)
    errors: list[tuple[Path, str]] = []
    out = []
    for i, entry in enumerate(raw):
        here = base + (i,)
        if not isinstance(entry, Mapping):
            errors.append((here, f"expected a table, got {_got(entry)}"))
            continue
        entry_errors: list[tuple[Path, str]] = []
        params: tuple[str, ...] = ()
        if "params" not in entry:
            entry_errors.append((here + ("params",), "required key is missing: expected an array of globs"))
        else:
            try:
                params = conv.structure(entry["params"], tuple[str, ...])
                if not params:
                    entry_errors.append((here + ("params",), "expected at least one glob"))
            except Exception as exc:  # noqa: BLE001
                entry_errors += flatten_errors(exc, here + ("params",))
        strict = True
        if "strict" in entry:
            try:
                strict = conv.structure(entry["strict"], bool)
            except Exception as exc:  # noqa: BLE001
                entry_errors += flatten_errors(exc, here + ("strict",))
        options: dict[str, Any] = {}
        for key, item in entry.items():
            if key in ("params", "strict"):
                continue
            if key not in per_group:
                valid = ["params", "strict", *per_group]
                entry_errors.append(
                    (
                        here + (str(key),),
                        f"{key!r} cannot be set per group{_key_hint(str(key), valid)}; "
                        f"valid keys: {', '.join(valid)}",
                    )
                )
                continue
            try:
                options[key] = conv.structure(item, hints[key])
            except Exception as exc:  # noqa: BLE001
                entry_errors += flatten_errors(exc, here + (key,))
        if not entry_errors and options:
            try:
                attrs.evolve(target, **options)  # runs the field validators on the overridden values
            except FieldValueError as exc:
                entry_errors += flatten_errors(exc, here)
            except (ValueError, TypeError) as exc:
                entry_errors.append((here, str(exc)))
        errors += entry_errors
        if not entry_errors:
            out.append(GroupOverride(params=params, strict=strict, options=options))
    if errors:
        raise StructureErrors(errors)
    return tuple(out)


def _tagged_union_hook(conv: cattrs.Converter, registry: Names, kind: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, Spec) and kind == value.KIND:
            return value
        if not isinstance(value, Mapping):
            raise _fail(f"expected a table with a `type` naming a registered {kind}, got {_got(value)}")
        if "type" not in value:
            raise _fail(
                f"required key is missing: registered {kind} types are {_names_list(registry, kind)}",
                ("type",),
            )
        name = value["type"]
        if not isinstance(name, str):
            raise _fail(f"expected a string naming a registered {kind}, got {_got(name)}", ("type",))
        cls = registry.lookup(kind, name)
        if cls is None:
            raise _fail(registry.unknown_name_message(kind, name), ("type",))
        rest = {k: v for k, v in value.items() if k != "type"}
        spec = conv.structure(rest, cls)
        if ":" in name:
            spec = attrs.evolve(spec, qualifier=name.partition(":")[0])
        return spec

    return structure


def _names_list(registry: Names, kind: str) -> str:
    return ", ".join(repr(n) for n in registry.names(kind)) or "(none)"


# ---------------------------------------------------------------- unstructure


def spec_to_dict(obj: Any, *, include_defaults: bool = True) -> Any:
    """Plain data (dicts, lists, numbers, strings) for a spec, as TOML holds it (``None`` values left out)."""
    if isinstance(obj, RunSpec):
        out = _spec_to_dict(obj, include_defaults=include_defaults)
        for name in sorted(obj.tables):
            out[name] = _spec_to_dict(obj.tables[name], include_defaults=include_defaults)
        return out
    return _spec_to_dict(obj, include_defaults=include_defaults)


def _spec_to_dict(obj: Any, *, include_defaults: bool = True) -> Any:
    """A spec as plain TOML-ready data (``type`` first, ``None`` values left out)."""
    if isinstance(obj, Spec) or attrs.has(type(obj)):
        out: dict[str, Any] = {}
        if isinstance(obj, Spec):
            out["type"] = f"{obj.qualifier}:{obj.TYPE}" if obj.qualifier else obj.TYPE
        for f in spec_fields(type(obj)):
            value = getattr(obj, f.name)
            if value is None or (isinstance(value, Mapping) and not value):
                continue
            if not include_defaults and _is_default(f, value):
                continue
            if f.name == "group_overrides" and isinstance(obj, OptimizerSpec):
                if value:
                    out[f.name] = [_override_to_dict(o) for o in value]
                continue
            out[f.name] = spec_to_dict(value, include_defaults=include_defaults)
        return out
    if isinstance(obj, Mapping):
        return {str(k): spec_to_dict(v, include_defaults=include_defaults) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple, frozenset, set)):
        return [spec_to_dict(v, include_defaults=include_defaults) for v in obj]
    return obj


def _override_to_dict(override: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"params": list(override.params)}
    if not override.strict:
        out["strict"] = False
    out.update(spec_to_dict(dict(override.options)))
    return out


def _is_default(f: attrs.Attribute, value: Any) -> bool:
    default = f.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return False
        default = default.factory()
    try:
        return bool(default == value)
    except Exception:  # noqa: BLE001 - exotic __eq__, treat as non-default
        return False
