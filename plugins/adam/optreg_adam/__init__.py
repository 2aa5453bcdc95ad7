"""optreg-adam: the Adam family of optimizers for optreg.

Optimizers (:mod:`optreg_adam.optim`): :class:`Adam`, :class:`AdamW` (also with bfloat16 state),
:class:`AdEMAMix`, :class:`SimplifiedAdEMAMix`, :class:`ADOPT`, :class:`LaProp`, :class:`ACProp`,
:class:`Madam`. The functional per-tensor AdamW update other plugins build on is
:func:`optreg_adam.functional.adamw_update_` (list version: :func:`optreg_adam.functional.adamw`).

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_adam.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point group.
The optimizer classes and the functional API load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_adam.specs import (
    ALL_SPECS,
    ACPropSpec,
    AdamSpec,
    AdamWSpec,
    AdEMAMixSpec,
    ADOPTSpec,
    LaPropSpec,
    MadamSpec,
    SimplifiedAdEMAMixSpec,
)

__all__ = [
    "ALL_SPECS",
    "ACProp",
    "ACPropSpec",
    "ADOPT",
    "ADOPTSpec",
    "AdEMAMix",
    "AdEMAMixSpec",
    "Adam",
    "AdamSpec",
    "AdamW",
    "AdamWSpec",
    "LaProp",
    "LaPropSpec",
    "Madam",
    "MadamSpec",
    "SimplifiedAdEMAMix",
    "SimplifiedAdEMAMixSpec",
    "adamw",
    "adamw_update_",
]
__version__ = "0.1.0"

_OPTIMIZERS = ("ACProp", "ADOPT", "AdEMAMix", "Adam", "AdamW", "LaProp", "Madam", "SimplifiedAdEMAMix")
_FUNCTIONAL = ("adamw", "adamw_update_")

#: Names that import torch, served on first use (the registry imports this package for every command).
_SERVED = {**dict.fromkeys(_OPTIMIZERS, "optreg_adam.optim"), **dict.fromkeys(_FUNCTIONAL, "optreg_adam.functional")}
__getattr__, __dir__ = lazy_exports(__name__, _SERVED, globals())
