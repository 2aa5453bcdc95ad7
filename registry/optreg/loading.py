"""Reading spec files and writing them back: the module-level shortcuts of :class:`~optreg.Registry`.

``load_spec(path)`` and ``parse_spec(text_or_mapping)`` give a :class:`~optreg.RunSpec` (parsed by
the process-wide registry unless one is passed); ``dump_spec(spec)`` writes TOML that parses back
to the same spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from optreg.convert import spec_to_dict
from optreg.registry import Registry, get_registry
from optreg.runspec import RunSpec
from optreg.tomlfiles import dump_toml, parse_toml

__all__ = ["dump_spec", "load_spec", "parse_spec", "parse_toml"]


def parse_spec(
    source: str | Mapping[str, Any], *, file: str | None = None, registry: Registry | None = None
) -> RunSpec:
    """A :class:`RunSpec` from TOML text or an already-parsed mapping."""
    return (registry or get_registry()).parse_spec(source, file=file)


def load_spec(path: str | os.PathLike[str], *, registry: Registry | None = None) -> RunSpec:
    """A :class:`RunSpec` from a TOML file; every error names the file."""
    return (registry or get_registry()).load_spec(path)


def dump_spec(spec: Any, *, include_defaults: bool = True) -> str:
    """TOML text for a :class:`RunSpec` (or any spec); parsing it gives back an equal spec."""
    return dump_toml(spec_to_dict(spec, include_defaults=include_defaults))
