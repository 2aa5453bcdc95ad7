"""myfamily: an optreg plugin.

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_myfamily.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point group
and calls its hooks when a registry is built. The optimizer class loads on first use.
"""

from __future__ import annotations

from typing import Any

from optreg_myfamily.specs import ALL_SPECS, MyfamilyLinearSpec, MyfamilySGDWSpec

__all__ = ["ALL_SPECS", "MyfamilyLinearSpec", "MyfamilySGDW", "MyfamilySGDWSpec"]


def __getattr__(name: str) -> Any:
    if name == "MyfamilySGDW":  # imports torch: only when asked for
        from optreg_myfamily.optim import MyfamilySGDW

        return MyfamilySGDW
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
