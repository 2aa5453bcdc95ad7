"""The step coefficients of the schedule-free optimizers and the wrapper, in the form each op takes.

Step coefficients (interpolation weights, the step size, the second-moment decay and its bias
correction) are 0-dim float64 tensors, computed from the group's 0-dim step counters, so that a
``step_factor`` step needs no host sync. The elementwise ops take them in one of two forms:

* a plain step on CPU (:func:`optreg.optim.host_scalars`) passes Python floats, read once per group,
  to the ops whose Python-number and 0-dim-tensor overloads run the same kernel on the same value:
  ``mul_`` and ``div`` (the CPU kernels read a 0-dim operand as a scalar either way) and ``lerp_``
  on float32/float64 (both overloads cast the weight to the tensor's dtype and share one formula);
* a ``step_factor`` step, every step on an accelerator, and every step under
  :func:`optreg.optim.accelerator_path` passes the 0-dim tensors (no host read).

Ops with no overload that takes a tensor coefficient the same way (``y += c * u``) take the tensor
in both. So a plain step and one with ``step_factor = 1`` run the same kernels on the same values
and agree bit for bit, on every machine.

:func:`optreg.optim.coef` makes the same choice per call; :class:`Coefficients` makes it once per
group and step (the floats are read once, the casts to a dtype done once), and knows which ops may
take a float at all.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["Coefficients"]


#: dtypes whose ``lerp_`` gives the same result for a Python-float weight and a 0-dim tensor weight
#: (for bfloat16/float16 the float overload keeps the weight in float32, the tensor one rounds it).
_EXACT_LERP = (torch.float32, torch.float64)


class Coefficients:
    """The coefficients of one step of one group: 0-dim tensors, and Python floats when ``host``.

    ``host`` is ``step_factor is None and optreg.optim.host_scalars(device)``: true only for a plain step
    on CPU outside :func:`optreg.optim.accelerator_path`; the floats are read once here, not per tensor.
    See the module doc for which ops may take which form.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor | None], host: bool) -> None:
        self.tensors = dict(tensors)
        self.host = host
        self._floats: dict[str, float] = {}
        self._cast: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def _float(self, name: str) -> float:
        if name not in self._floats:
            self._floats[name] = float(self.tensors[name])
        return self._floats[name]

    def scalar(self, name: str) -> float | torch.Tensor:
        """For ``mul_`` / ``div`` (and their foreach forms): the float in a host step, else the tensor."""
        return self._float(name) if self.host else self.tensors[name]

    def lerp(self, name: str, dtypes: tuple[torch.dtype, ...]) -> float | torch.Tensor:
        """A ``lerp_`` weight for tensors of ``dtypes``: the float only where both forms agree."""
        if all(d in _EXACT_LERP for d in dtypes):
            if self.host:
                return self._float(name)
            if len(dtypes) == 1:  # lerp_ casts the weight to the tensor's dtype: do it once per group
                return self.tensor(name, dtypes[0])
        return self.tensors[name]

    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The 0-dim tensor (``addcmul_`` takes a coefficient only as a tensor), cast to ``dtype`` once.

        The ops cast a 0-dim operand to the other operands' dtype anyway; casting it once per group,
        not once per tensor, gives the same value.
        """
        value = self.tensors[name]
        if dtype is None or value is None or value.dtype == dtype:
            return value
        key = (name, dtype)
        if key not in self._cast:
            self._cast[key] = value.to(dtype)
        return self._cast[key]

    def flag(self, name: str) -> bool | torch.Tensor | None:
        """A 0-dim bool tensor as a Python bool in a host step (to skip work), else the tensor (or None)."""
        value = self.tensors.get(name)
        if value is None or not self.host:
            return value
        return bool(value)
