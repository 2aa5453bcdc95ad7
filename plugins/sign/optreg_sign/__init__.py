"""optreg-sign: sign-based optimizers (Lion, Signum, signSGD) for optreg.

Importing this package imports no torch: the optimizer classes and the functional layer load on
first use (``from optreg_sign import Lion`` imports them then). The functional layer
(:mod:`optreg_sign.functional`) is public and stable:
``lion_update_(param, grad, exp_avg, *, lr, beta1, beta2, weight_decay, maximize=False,
step_factor=None)`` is what matrix-aware optimizers call for their non-matrix parameters.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_sign.specs import ALL_SPECS, LionSpec, SignSGDSpec, SignumSpec

__all__ = [
    "ALL_SPECS",
    "Lion",
    "LionSpec",
    "SignSGD",
    "SignSGDSpec",
    "Signum",
    "SignumSpec",
    "lion",
    "lion_update_",
    "shape_scale",
    "signum",
    "signum_update_",
]
__version__ = "0.1.0"

#: Names that import torch, and the module each comes from: loaded on first use.
_LAZY = {
    "Lion": "optreg_sign.optim",
    "SignSGD": "optreg_sign.optim",
    "Signum": "optreg_sign.optim",
    "lion": "optreg_sign.functional",
    "lion_update_": "optreg_sign.functional",
    "shape_scale": "optreg_sign.functional",
    "signum": "optreg_sign.functional",
    "signum_update_": "optreg_sign.functional",
}

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
