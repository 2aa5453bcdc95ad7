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

from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _OPTIMIZERS:  # imports torch: only when asked for
        from optreg_adam import optim

        return getattr(optim, name)
    if name in _FUNCTIONAL:
        from optreg_adam import functional

        return getattr(functional, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
