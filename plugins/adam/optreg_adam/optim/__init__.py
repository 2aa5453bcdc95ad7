"""The optimizers of the Adam family, one module per algorithm (the math is in :mod:`optreg_adam.functional`).

* :mod:`~optreg_adam.optim.adam`: :class:`Adam`, :class:`AdamW` (torch's results and state, bf16 state)
* :mod:`~optreg_adam.optim.ademamix`: :class:`AdEMAMix`
* :mod:`~optreg_adam.optim.simplified_ademamix`: :class:`SimplifiedAdEMAMix`
* :mod:`~optreg_adam.optim.adopt`: :class:`ADOPT`
* :mod:`~optreg_adam.optim.laprop`: :class:`LaProp`
* :mod:`~optreg_adam.optim.acprop`: :class:`ACProp`
* :mod:`~optreg_adam.optim.madam`: :class:`Madam`

Each class docstring states its update rule, the reference, and what differs from the paper or
the peer package. The shared skeleton (argument checks, lazy state, checkpoints, the per-tensor
driver) is the private ``_base`` module.
"""

from optreg_adam.optim.acprop import ACProp
from optreg_adam.optim.adam import Adam, AdamW
from optreg_adam.optim.ademamix import AdEMAMix
from optreg_adam.optim.adopt import ADOPT
from optreg_adam.optim.laprop import LaProp
from optreg_adam.optim.madam import Madam
from optreg_adam.optim.simplified_ademamix import SimplifiedAdEMAMix

__all__ = ["ACProp", "ADOPT", "AdEMAMix", "Adam", "AdamW", "LaProp", "Madam", "SimplifiedAdEMAMix"]
