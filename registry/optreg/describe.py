"""``describe(name)``: everything optreg knows about a registered name, as plain data (``optreg show --json``)."""

from __future__ import annotations

import inspect
from typing import Any

from optreg.registry import KINDS, Registry, get_registry

__all__ = ["describe", "unknown_name"]


def describe(name: str, kind: str | None = None, *, registry: Registry | None = None) -> list[dict[str, Any]]:
    """One entry per kind that registers ``name`` (a name may be an optimizer and a schedule at once).

    Each entry holds ``kind``, ``name`` (canonical), ``aliases``, ``plugin``, ``distribution``,
    ``version``, ``doc``, ``paper``, ``capabilities`` and ``fields``: a row per option with its
    ``name``, ``type``, ``default``, ``bounds``, ``per_group`` and ``doc``, exactly what
    ``optreg show NAME --json`` prints. Raises ``LookupError`` (with a did-you-mean) for an
    unknown name, or the clash when two plugins claim it.
    """
    from optreg.schema import field_rows

    reg = registry or get_registry()
    kinds = [kind] if kind else list(KINDS)
    found = [(k, cls) for k in kinds if (cls := reg.lookup(k, name)) is not None]
    if not found:
        clashed = [k for k in kinds if name in reg.clashes(k)]
        if kind or clashed:
            raise LookupError(reg.unknown_name_message(kind or clashed[0], name))
        raise LookupError(unknown_name(reg, name))
    out = []
    for k, cls in found:
        info = reg.provider(k, name if ":" in name else cls.TYPE)
        out.append(
            {
                "kind": k,
                "name": cls.TYPE,
                "aliases": sorted(a for a, t in reg.aliases(k).items() if t == cls.TYPE),
                "plugin": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "doc": inspect.cleandoc(cls.__doc__ or ""),
                "paper": cls.PAPER,
                "capabilities": sorted(getattr(cls, "CAPABILITIES", ())),
                "fields": field_rows(cls),
            }
        )
    return out


def unknown_name(reg: Registry, name: str) -> str:
    """The message for a name no kind registers: suggestions from the kind a name clearly belongs to first
    (``cosine`` is a schedule people mean: ``cos_with_warmup``), then the closest spelling of any kind."""
    from optreg.suggest import COMMON_NAMES, suggestions

    every = {k: reg.names(k) + sorted(reg.aliases(k)) for k in KINDS}
    head = f"no optimizer, scheduler or strategy is named {name!r}"
    for k in KINDS:  # a case or separator slip, or a name other libraries use: that kind's names only
        found = suggestions(name, every[k], COMMON_NAMES.get(k), fuzzy=False)
        if found:
            return f"{head} (did you mean the {k} {' or '.join(repr(f) for f in found)}?); run `optreg list`"
    pooled = {n: k for k in reversed(KINDS) for n in every[k]}
    found = suggestions(name, list(pooled))
    if found:
        return f"{head} (did you mean the {pooled[found[0]]} {found[0]!r}?); run `optreg list`"
    return f"{head}; run `optreg list`"
