"""JSON Schema of the spec format, generated from the registered classes.

Editors validate TOML against it (e.g. Taplo / Even Better TOML with a
``#:schema ./optreg.schema.json`` comment, or a ``[[schema]]`` mapping in
``.taplo.toml``). It follows the same rules as the converter: unknown keys are
not allowed, numbers are bounded as the fields say, ``type`` picks the table.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from optreg.convert import (
    KIND_BASES,
    _is_hetero_tuple,
    _is_homo_sequence,
    _is_literal,
    _is_mapping,
    _is_union,
    field_types,
    spec_to_dict,
)
from optreg.runspec import RunSpec
from optreg.specs import OptimizerSpec, Spec, spec_fields

if TYPE_CHECKING:
    from optreg.registry import Registry

__all__ = ["json_schema", "field_rows"]

SCHEMA_ID = "https://optreg.dev/schema/run-spec.json"


def _type_schema(tp: Any, defs: dict[str, Any], registry: Registry) -> dict[str, Any]:
    if tp is float:
        return {"type": "number"}
    if tp is int:
        return {"type": "integer"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is str:
        return {"type": "string"}
    if tp is Any:
        return {}
    if _is_literal(tp):
        return {"enum": list(typing.get_args(tp))}
    if _is_union(tp):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return _type_schema(members[0], defs, registry)
        return {"anyOf": [_type_schema(m, defs, registry) for m in members]}
    if _is_hetero_tuple(tp):
        args = typing.get_args(tp)
        return {
            "type": "array",
            "prefixItems": [_type_schema(a, defs, registry) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if _is_homo_sequence(tp):
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0], defs, registry)}
    if _is_mapping(tp):
        key_type, value_type = typing.get_args(tp)
        out: dict[str, Any] = {"type": "object", "additionalProperties": _type_schema(value_type, defs, registry)}
        if _is_literal(key_type):
            out["propertyNames"] = {"enum": list(typing.get_args(key_type))}
        return out
    if isinstance(tp, type) and tp in KIND_BASES.values():
        kind = tp.KIND
        return {"$ref": f"#/$defs/{kind}"}
    if attrs.has(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _class_schema(tp, defs, registry)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for field type {tp!r}")


def _field_schema(cls: type, f: attrs.Attribute, tp: Any, defs: dict[str, Any], registry: Registry) -> dict[str, Any]:
    if f.name == "group_overrides" and issubclass(cls, OptimizerSpec):
        return _overrides_schema(cls, defs, registry)
    schema = _type_schema(tp, defs, registry)
    bounds = f.metadata.get("bounds", {})
    names = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    if bounds:
        keywords = {names[k]: v for k, v in bounds.items()}
        if "items" in schema:
            schema["items"].update(keywords)
        elif "prefixItems" in schema:
            for item in schema["prefixItems"]:
                item.update(keywords)
        else:
            schema.update(keywords)
    doc = f.metadata.get("doc")
    if doc:
        schema["description"] = doc
    default = _default_of(f)
    if default is not attrs.NOTHING and default is not None:
        schema["default"] = spec_to_dict(default)
    return schema


def _overrides_schema(cls: type, defs: dict[str, Any], registry: Registry) -> dict[str, Any]:
    hints = field_types(cls)
    props: dict[str, Any] = {
        "params": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Globs over FQNs."},
        "strict": {"type": "boolean", "default": True, "description": "A glob must match a parameter."},
    }
    for f in spec_fields(cls):
        if f.metadata.get("per_group", True):
            props[f.name] = _field_schema(cls, f, hints[f.name], defs, registry)
            props[f.name].pop("default", None)
    return {
        "type": "array",
        "description": "Per-parameter-group options.",
        "items": {"type": "object", "properties": props, "required": ["params"], "additionalProperties": False},
    }


def _default_of(f: attrs.Attribute) -> Any:
    default = f.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return attrs.NOTHING if default.takes_self else default.factory()
    return default


def _class_schema(cls: type, defs: dict[str, Any], registry: Registry) -> dict[str, Any]:
    hints = field_types(cls)
    props: dict[str, Any] = {}
    required = []
    if issubclass(cls, Spec):
        names = [cls.TYPE, *(a for a, t in registry.aliases(cls.KIND).items() if t == cls.TYPE)]
        props["type"] = {"enum": names} if len(names) > 1 else {"const": cls.TYPE}
        required.append("type")
    for f in spec_fields(cls):
        props[f.name] = _field_schema(cls, f, hints[f.name], defs, registry)
        if f.default is attrs.NOTHING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    doc = (cls.__doc__ or "").strip()
    if doc:
        out["description"] = doc.split("\n\n")[0]
    return out


def json_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file for the classes in ``registry``."""
    defs: dict[str, Any] = {}
    for kind in KIND_BASES:
        variants = []
        for name in registry.names(kind):
            cls = registry.spec_class(kind, name)
            key = f"{kind}.{name}"
            defs[key] = _class_schema(cls, defs, registry)
            variants.append({"$ref": f"#/$defs/{key}"})
        defs[kind] = {"oneOf": variants} if variants else {"not": {}}
    root = _class_schema(RunSpec, defs, registry)
    root["properties"]["schema_version"]["const"] = RunSpec.SCHEMA_VERSION
    for name, cls in sorted(registry.tables().items()):
        root["properties"][name] = _class_schema(cls, defs, registry)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "optreg run spec",
        **root,
        "$defs": defs,
    }


def field_rows(cls: type) -> list[dict[str, Any]]:
    """One row per field: name, type, default, bounds, doc (for ``optreg show`` and the docs)."""
    from optreg.convert import describe_type

    hints = field_types(cls)
    rows = []
    for f in spec_fields(cls):
        default = _default_of(f)
        rows.append(
            {
                "name": f.name,
                "type": describe_type(hints[f.name]),
                "default": "(required)" if default is attrs.NOTHING else _show_default(default),
                "bounds": _describe_bounds(f.metadata.get("bounds", {})),
                "per_group": bool(f.metadata.get("per_group", True)),
                "doc": f.metadata.get("doc", ""),
            }
        )
    return rows


def _show_default(value: Any) -> str:
    data = spec_to_dict(value)
    if data is None:
        return "none"
    if isinstance(data, bool):
        return str(data).lower()
    if isinstance(data, (list, Mapping)):
        import json

        return json.dumps(data)
    return repr(data) if isinstance(data, str) else str(data)


def _describe_bounds(bounds: Mapping[str, Any]) -> str:
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{symbols[k]} {v}" for k, v in bounds.items())
