"""Lazy exports for a plugin package: names that import torch load on first use, not with the package.

The registry imports every plugin's ``plugin`` module (and so its package ``__init__``) for every
``optreg`` command; a package that exports its optimizer classes eagerly would import torch there.
In a plugin's ``__init__.py``::

    from optreg.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {"Adan": "optreg_adan.optim"}, globals())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: Mapping[str, Any] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` serving each of ``names`` (name -> the module that defines it) on first use,
    and a matching ``__dir__`` (which also lists ``namespace``, the package's own globals)."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted({*(namespace or {}), *table})

    return __getattr__, __dir__
