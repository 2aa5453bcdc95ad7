"""The kernels and update math of the Muon family, one module each (import them by their full path):

- :mod:`optreg_muon.functional.newton_schulz`: the Newton-Schulz iteration (``newton_schulz``), its
  coefficient presets (``COEFFICIENT_PRESETS``, ``resolve_coefficients``) and preconditionings, and the
  torch kernel;
- :mod:`optreg_muon.functional.triton_ns`: the symmetric Triton kernels (optional: ``optreg-muon[triton]``;
  importing the module does not import triton);
- :mod:`optreg_muon.functional.matrix`: matrix views, row blocks, batched orthogonalization, LR ratios by
  shape, and the steps of Muon, NorMuon and Dion on one matrix;
- :mod:`optreg_muon.functional.dion2`: Dion2's row (column) selection by L1 norm, error feedback and the
  scatter of the orthogonalized submatrix;
- ``_non_matrix``: the AdamW / Lion update of non-matrix parameters (from optreg-adam and optreg-sign).

Nothing is imported here, so ``optreg_muon.functional.newton_schulz`` always names the module, never the
function of the same name.
"""
