"""Case declarations of the conformance kit: what a plugin's test suite states about itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "CAPABILITIES", "CHECKS", "ErrorCase", "OptimizerCase", "SchedulerCase", "inferred_capabilities", "uncompiled_path",
]

#: Optional behaviours an optimizer case may declare (each adds checks).
CAPABILITIES = frozenset(
    {
        "step_factor",  # step(step_factor=t) with a 0/1 tensor: 0 leaves params and state bit-identical
        "foreach",  # a `foreach` option: per-tensor and multi-tensor paths agree
        "compile",  # a `compile` option: the torch.compile'd and the eager step agree (inferred from the option)
    }
)


def inferred_capabilities(spec: Any) -> frozenset[str]:
    """Capabilities the kit reads off a spec's options rather than its ``CAPABILITIES``: ``"compile"`` when the
    spec whose options groups use (a wrapper's ``inner``, see ``group_option_spec()``) has a ``compile`` option.

    Every case of such a spec gets them, whether or not it lists capabilities (lists written before a capability
    existed would otherwise drop it); a case that cannot take the check skips it with a reason
    (``skip={"compiled_parity": ...}``).
    """
    from optreg.specs import spec_fields

    target = spec.group_option_spec()
    return frozenset({"compile"}) if any(f.name == "compile" for f in spec_fields(type(target))) else frozenset()

def uncompiled_path(spec: Any) -> str | None:
    """The path a spec's options choose that ``compile = true`` does not take (``fused`` or ``foreach`` set true, on
    the spec whose options groups use), or ``None``: a case with one has no compiled path to compare."""
    target = spec.group_option_spec()
    return next((name for name in ("fused", "foreach") if getattr(target, name, None) is True), None)


#: Checks a case may skip, each with a reason a user would accept.
CHECKS = frozenset(
    {
        "descent_quadratic",
        "descent_rosenbrock",
        "descent_mlp",
        "resume",
        "none_grads",
        "zero_grads",
        "zero_size_and_frozen",
        "bf16",
        "group_overrides",
        "closure",
        "strict_types",
        "copy",
        "float64",
        "complex",
        "add_param_group",
        "state_dict_hooks",
        "maximize",
        "defaults",
        "non_finite",
        "huge_sizes",
        "state_estimate",
        "compiled_parity",
    }
)


def _frozen_set(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _case_id(spec: Mapping[str, Any]) -> str:
    extras = [f"{k}={v}" for k, v in spec.items() if k != "type" and not isinstance(v, (Mapping, list))]
    return "-".join([str(spec.get("type", "?")), *extras[:3]])


@attrs.frozen(kw_only=True)
class OptimizerCase:
    """One optimizer configuration the kit checks.

    ``spec``: the optimizer table as a dict (``{"type": "adamw", "lr": 1e-2}``).
    ``capabilities``: optional behaviours to check (see :data:`CAPABILITIES`); by default the
    spec class's own ``CAPABILITIES``. A case may only narrow them (e.g. a per-tensor case of an
    optimizer whose spec declares ``foreach``): one it names that the spec does not declare fails.
    ``"compile"`` is inferred from the spec's ``compile`` option and added to every case of it
    (:func:`inferred_capabilities`); skip its check with ``skip={"compiled_parity": reason}``.
    ``skip``: check name -> reason, for checks that do not apply.
    ``descent``: problem -> extra spec options for that problem (e.g. a smaller
    ``lr`` on Rosenbrock); ``descent_steps`` and ``descent_ratio`` set the bar
    (final loss <= ratio x initial loss).
    ``parity_rtol`` / ``parity_atol``: tolerance of the foreach parity check and of the complex
    check (complex params against the same optimizer on their ``view_as_real``: reductions over a
    complex tensor may sum in another order).
    ``compile_rtol`` / ``compile_atol``: tolerance of the compiled-parity check (a compiled kernel
    computes the eager formulas fused or reordered: a few ulps apart per step).
    """

    spec: Mapping[str, Any]
    capabilities: frozenset[str] | None = attrs.field(default=None, converter=_frozen_set)
    skip: Mapping[str, str] = attrs.field(factory=dict)
    descent: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    descent_steps: int = 100
    descent_ratio: float = 0.5
    parity_rtol: float = 1e-5
    parity_atol: float = 1e-6
    compile_rtol: float = 1e-5
    compile_atol: float = 1e-7
    id: str | None = None

    def __attrs_post_init__(self) -> None:
        unknown = set(self.capabilities or ()) - CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
        bad = set(self.skip) - CHECKS
        if bad:
            raise ValueError(f"unknown checks to skip {sorted(bad)}; known: {sorted(CHECKS)}")
        empty = [name for name, reason in self.skip.items() if not str(reason).strip()]
        if empty:
            raise ValueError(f"skipping {empty} needs a reason")

    @property
    def name(self) -> str:
        return self.id or _case_id(self.spec)


@attrs.frozen(kw_only=True)
class ErrorCase:
    """A spec that must be rejected: the error's ``path`` and a regex ``match`` on its message."""

    spec: Mapping[str, Any]
    path: str
    match: str
    id: str | None = None

    @property
    def name(self) -> str:
        return self.id or f"{self.spec.get('type', '?')}-{self.path}"


@attrs.frozen(kw_only=True)
class SchedulerCase:
    """One schedule configuration and the LR it must give at given points.

    ``expected``: ``current -> lr`` for a group whose initial LR is ``initial_lr``;
    include the boundaries (0, end of warmup, ``t_max``, past ``t_max``).
    ``step_tokens``: tokens per step for ``units = "tokens"`` schedules.
    """

    spec: Mapping[str, Any]
    t_max: int | None = None
    initial_lr: float = 1.0
    expected: Mapping[int, float] = attrs.field(factory=dict)
    rel_tol: float = 1e-9
    abs_tol: float = 1e-12
    step_tokens: int = 1
    id: str | None = None

    @property
    def name(self) -> str:
        return self.id or _case_id(self.spec)
