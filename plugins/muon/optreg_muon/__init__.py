"""optreg-muon: Muon, NorMuon, Dion and Dion2, with torch and Triton Newton-Schulz kernels.

``optreg_muon.specs`` holds the specs ``muon``, ``normuon``, ``dion`` and ``dion2``; ``optreg_muon.optim`` the
optimizers, usable directly; ``optreg_muon.functional`` the kernels: ``functional.newton_schulz`` (the
iteration, its coefficient presets and preconditioning), ``functional.triton_ns`` (the symmetric Triton
kernels) and ``functional.matrix`` (the matrix updates' math).

Importing this package imports no torch: the optimizers and the Newton-Schulz names load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_muon.specs import ALL_SPECS, Dion2Spec, DionSpec, MuonSpec, NorMuonSpec

__all__ = [
    "ALL_SPECS",
    "COEFFICIENT_PRESETS",
    "Dion",
    "Dion2",
    "Dion2Spec",
    "DionSpec",
    "Muon",
    "MuonSpec",
    "NorMuon",
    "NorMuonSpec",
    "resolve_coefficients",
]
__version__ = "0.1.0"

_LAZY = {
    "Muon": "optreg_muon.optim",
    "NorMuon": "optreg_muon.optim",
    "Dion": "optreg_muon.optim",
    "Dion2": "optreg_muon.optim",
    "COEFFICIENT_PRESETS": "optreg_muon.functional.newton_schulz",
    "resolve_coefficients": "optreg_muon.functional.newton_schulz",
}

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
