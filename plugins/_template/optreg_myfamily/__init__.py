"""myfamily: an optreg plugin.

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_myfamily.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point group
and calls its hooks when a registry is built. The optimizer class loads on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_myfamily.specs import ALL_SPECS, MyfamilyLinearSpec, MyfamilySGDWSpec

__all__ = ["ALL_SPECS", "MyfamilyLinearSpec", "MyfamilySGDW", "MyfamilySGDWSpec"]

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, {"MyfamilySGDW": "optreg_myfamily.optim"}, globals())
