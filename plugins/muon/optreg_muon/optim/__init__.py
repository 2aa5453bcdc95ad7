"""The optimizers of the Muon family, one module each: :mod:`.muon`, :mod:`.normuon`, :mod:`.dion`, :mod:`.dion2`.

They share a private base (``_orthogonal``: routing by parameter kind, argument checks, the AdamW / Lion
branch of non-matrix parameters); the math lives in :mod:`optreg_muon.functional`.

Complex parameters are refused at construction (and by ``add_param_group``): the orthogonalized update
is defined on real matrices (the polar factor of a complex matrix is not that of its real view, and
Dion's QR would be complex), so a complex model should keep its real and imaginary parts as real
parameters.

Matrix shapes: 3-D and larger tensors (conv kernels, stacked experts) are flattened to
``(shape[0], prod(rest))`` with ``flatten = True``, else treated as a batch of matrices over the leading
dimensions. ``split_sizes`` cuts the rows of a fused matrix (e.g. QKV) into blocks and ``num_heads`` cuts
each block into equal per-head row blocks; each block is orthogonalized on its own. Blocks of the same
shape (across all parameters of a group) go through one batched Newton-Schulz call when ``foreach`` is
on (the default).
"""

from optreg_muon.functional.matrix import adjust_lr_ratio
from optreg_muon.optim.dion import Dion
from optreg_muon.optim.dion2 import Dion2
from optreg_muon.optim.muon import Muon
from optreg_muon.optim.normuon import NorMuon

__all__ = ["Dion", "Dion2", "Muon", "NorMuon", "adjust_lr_ratio"]
