"""The functional layer of the Adam family: the math, apart from the ``torch.optim.Optimizer`` classes.

* :mod:`optreg_adam.functional.adam`: Adam/AdamW, one tensor (:func:`adamw_update_`) or lists of
  tensors (:func:`adamw`) over every path (fused, per-tensor, foreach, compiled). Other plugins
  build on these (Muon's non-matrix params); their signatures are stable.
* :mod:`optreg_adam.functional.kernels`: the per-tensor kernels of AdEMAMix, Simplified AdEMAMix,
  ADOPT, LaProp, ACProp and Madam (every step scalar a 0-dim tensor, eager or compiled).
* :mod:`optreg_adam.functional.rounding`: unbiased stochastic rounding to bfloat16 (bf16 state).
* :mod:`optreg_adam.functional.native`: AdamW with bf16 state in one hand-written C pass (built per machine).
"""

from optreg_adam.functional.adam import (
    FUSED_MIN_NUMEL,
    AdamImpl,
    AdamScalars,
    adam_scalars,
    adamw,
    adamw_update_,
    prefers_fused,
)
from optreg_adam.functional.kernels import acprop_, ademamix_, adopt_, laprop_, madam_, simplified_ademamix_
from optreg_adam.functional.native import native_available
from optreg_adam.functional.rounding import round_to_bf16_stochastic

__all__ = [
    "FUSED_MIN_NUMEL",
    "AdamImpl",
    "AdamScalars",
    "acprop_",
    "adam_scalars",
    "ademamix_",
    "adamw",
    "adamw_update_",
    "adopt_",
    "laprop_",
    "madam_",
    "native_available",
    "prefers_fused",
    "round_to_bf16_stochastic",
    "simplified_ademamix_",
]
