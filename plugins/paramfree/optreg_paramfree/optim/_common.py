"""The family base of the learning-rate-free optimizers (private: import the optimizers, not this).

Everything an estimator keeps between steps (``d``, its numerator, step
counters) is a 0-dim tensor on the parameters' device, so a step never waits on
the device (no ``.item()``) and a ``step_factor`` of 0 can leave it untouched
with ``torch.where``. The scalars live in the param groups, where users can log
them and where torch's ``state_dict`` already saves them.

A *scope* is the set of param groups that share one estimate: all groups (the
default, as in the reference implementations) or each group on its own
(``per_group_d = True``). A group's ``lr`` multiplies the estimated step size of
that group; a group whose ``lr`` is 0 is inactive (it neither moves nor feeds
the estimate), which is what a frozen group or a schedule at 0 should mean.

Complex parameters are stepped as their ``torch.view_as_real`` (``optreg.optim.real_view``): state
tensors mirror the parameter (complex), the arithmetic runs on real views, and every global
quantity (``d``'s numerator, distances, gradient norms) is the real view's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch

from optreg.compiling import CompileSetting, check_compile_setting, run_compiled, use_compile
from optreg.optim import (
    OptregOptimizer,
    Scratch,
    accumulate_dtype,
    as_scalar,
    check_number,
    group_device,
    is_sharded,
    keep_factor,
    prepare_step_factor,
    reduced,
    run_closure,
)

__all__ = [
    "AdamCoefficients",
    "CompiledPass",
    "GlobalSums",
    "ScopedScalarOptimizer",
    "adam_coefficients",
    "add_scaled_",
    "axpby_",
    "check_growth_rate",
    "compilable",
    "ema_square_",
    "l1_norm",
    "local",
    "lr_is_nonzero_number",
    "sum_probe",
]


def l1_norm(t: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """``sum |t|`` accumulated in ``optreg.optim.accumulate_dtype`` (as ``inner_product``); ``buffer``
    (shaped like ``t``) receives ``|t|``. Under sharding: of :func:`local` shards, added to :class:`GlobalSums`.

    ``abs`` into a work buffer then ``sum`` measured faster on CPU than ``vector_norm(t, 1)``.
    """
    return torch.abs(t, out=buffer).sum(dtype=accumulate_dtype(t))


def sum_probe(t: torch.Tensor) -> torch.Tensor:
    """``sum t`` (one read pass): NaN or inf when ``t`` holds a NaN or an inf, finite otherwise.

    ``0 * sum_probe(t)`` is 0 for finite ``t`` and NaN otherwise: added to an estimate, it makes a
    non-finite value visible where the update itself would hide it (``sign(NaN)`` is 0). Under
    sharding: of a :func:`local` shard, added to :class:`GlobalSums`.
    """
    return t.sum(dtype=accumulate_dtype(t))


# ---------------------------------------------------------------- global sums under sharding
#
# Under FSDP / HSDP / TP (optreg-parallel) a parameter, its gradient and its state are DTensors: the
# elementwise updates run on each rank's shard unchanged, but a sum over a parameter is a partial sum
# on each rank. The estimators reduce the *local shards* (plain tensors, which flatten even when a
# tensor is sharded unevenly) with the same code as one process, and GlobalSums completes the partial
# sums of a step with one all-reduce per device mesh (``optreg.optim.reduced``), as prodigyopt and
# dadaptation all-reduce their numerator and denominator once per step.


#: Exact types that are never sharded: checked first, it keeps the single-process path to one type test.
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view: in-place ops reach ``t``), a plain tensor itself."""
    return t if type(t) in _PLAIN or not is_sharded(t) else t.to_local()


class GlobalSums:
    """``count`` sums over the params of a step that are global under sharding (equal on every rank, and
    to one process's).

    ``add(i, term, like)`` adds ``term`` to sum ``i``. ``term`` is computed from :func:`local` tensors
    (``inner_product``, :func:`l1_norm`, :func:`sum_probe` of one parameter's tensors, times coefficients
    every rank holds: linear in the partial sums), and ``like`` is one of the tensors it reduced. A plain
    ``like`` (one process, DDP, a parameter tensor parallel leaves whole) makes ``term`` the param's whole
    contribution: it is added at once, ``sum + term``, the single-process arithmetic bit for bit. A
    DTensor ``like`` makes ``term`` this rank's partial sum: it is kept per device mesh and the mesh
    dimensions it is partial over (those ``like`` is sharded on), and :meth:`totals` completes all of a
    step's sums with one all-reduce per such key (``optreg.optim.reduced``) into plain tensors every
    rank agrees on. Every rank must add the same sums in the same order (SPMD, as any collective).
    """

    def __init__(self, like: torch.Tensor, count: int) -> None:
        self._zero = torch.zeros_like(like)
        self._sums = [self._zero] * count
        self._partial: dict[tuple[Any, tuple[bool, ...]], list[torch.Tensor]] = {}

    def add(self, i: int, term: torch.Tensor, like: torch.Tensor) -> None:
        if type(like) in _PLAIN or not is_sharded(like):
            self._sums[i] = self._sums[i] + term
            return
        # A sum over a tensor sharded on a mesh dimension is partial there, and whole where it is replicated.
        key = (like.device_mesh, tuple(not placement.is_replicate() for placement in like.placements))
        partial = self._partial.get(key)
        if partial is None:
            partial = self._partial[key] = [self._zero] * len(self._sums)
        partial[i] = partial[i] + term

    def totals(self) -> list[torch.Tensor]:
        """The sums: plain tensors (0-dim, in the dtype the terms promote to), the same on every rank."""
        from torch.distributed.tensor import DTensor, Partial, Replicate

        sums = list(self._sums)
        for (mesh, partial_dims), partial in self._partial.items():
            reduction = [Partial() if is_partial else Replicate() for is_partial in partial_dims]
            stacked = torch.stack([t.to(sums[0].device) for t in partial])
            whole = reduced(DTensor.from_local(stacked, mesh, reduction, run_check=False))
            sums = [total + whole[i] for i, total in enumerate(sums)]
        return sums


def auto_setting(setting: CompileSetting, auto_compiles: bool) -> CompileSetting:
    """``setting``, except ``"auto"`` becomes ``False`` for an algorithm whose compiled path does not pay."""
    return False if setting == "auto" and not auto_compiles else setting


# ---------------------------------------------------------------- the compiled path
#
# With ``compile`` (optreg.compiling.use_compile) a step runs its passes over the parameters as per-tensor
# kernels (``_kernels``) through ``run_compiled``: plain contiguous tensors on the scalars' device, flattened.
# Every other tensor (a DTensor shard, a non-contiguous or channels-last tensor, a strided slice) takes the
# eager code, in the same step: the sums of both add up in the same GlobalSums.


def compilable(device: torch.device, *tensors: torch.Tensor | None) -> bool:
    """Whether the compiled kernels take these tensors: plain (not sharded), contiguous and on ``device``
    (where the step's 0-dim scalars live)."""
    return all(t is None or (type(t) in _PLAIN and t.device == device and t.is_contiguous()) for t in tensors)


class CompiledPass:
    """One pass of a compiled step: a kernel's per-tensor calls, run together through
    :func:`optreg.compiling.run_compiled`, and the partial sums each call writes.

    ``add(*args)`` queues ``kernel(out, *args)`` (``kernel(*args)`` for a pass of no sums), ``out`` a fresh
    1-D tensor of ``sums`` elements (at least 2) in ``like``'s dtype and device (the estimator's scalars:
    float64); :meth:`run` runs the queue and adds each sum's total to a :class:`GlobalSums` (the tensors
    are plain, so the totals are whole). Nothing is read on the host.
    """

    def __init__(self, kernel: Callable[..., None], sums: int = 0, like: torch.Tensor | None = None) -> None:
        self.kernel = kernel
        self.sums = sums
        self.calls: list[tuple[Any, ...]] = []
        self._like = like
        self._outs: list[torch.Tensor] = []

    def add(self, *args: Any) -> None:
        """Queue one tensor's call: flattened tensors (``optreg.compiling.flat``), 0-dim scalars, constants."""
        if self.sums:
            like = self._like
            assert like is not None, "a pass with sums needs like"
            out = torch.zeros(max(2, self.sums), dtype=like.dtype, device=like.device)
            # A static size: the chunk's few writes share one small loop, not a parallel loop per tensor.
            torch._dynamo.mark_static(out, 0)
            self._outs.append(out)
            args = (out, *args)
        self.calls.append(args)

    def run(self, sums: GlobalSums | None = None, first: int = 0) -> None:
        """Run the queued calls; each sum's total over them goes to ``sums`` (slots ``first``, ``first + 1``, ...)."""
        if not self.calls:
            return
        run_compiled(self.kernel, self.calls)
        if sums is not None:
            totals = torch.stack(self._outs).sum(0)
            for i in range(self.sums):
                sums.add(first + i, totals[i], totals)
        self.calls, self._outs = [], []


def lr_is_nonzero_number(group: Mapping[str, Any]) -> bool:
    """Whether the group's ``lr`` is a Python number other than 0 (known without reading a tensor).

    Then the group is active whenever the step is taken, and a gated gradient (zeros on a skipped
    step) already gates the state updates: a square needs no gate factor (no extra pass).
    """
    lr = group["lr"]
    return not isinstance(lr, torch.Tensor) and lr != 0


# The elementwise helpers take their coefficients as 0-dim tensors on every device: a step reads
# nothing on the host (no sync on an accelerator), and a plain step and a ``step_factor = 1`` step run
# the same ops, so they agree bit for bit on every machine. Each is one pass per op without a
# temporary: ``mul_`` with a 0-dim tensor runs the kernel a Python scalar runs, and
# ``addcmul_(x, b)`` with a 0-dim ``b`` is ``add_(x, alpha=b)`` without reading ``b`` on the host.


def axpby_(y: torch.Tensor, a: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y <- a * y + b * x`` in place (``a``, ``b`` 0-dim tensors)."""
    return y.mul_(a).addcmul_(x, b)


def add_scaled_(y: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y <- y + b * x`` in place (``b`` a 0-dim tensor)."""
    return y.addcmul_(x, b)


def ema_square_(
    y: torch.Tensor,
    keep: torch.Tensor,
    x: torch.Tensor,
    value: float | torch.Tensor,
    buffer: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y <- keep * y + value * x * x`` in place.

    A Python float ``value`` (a hyperparameter such as ``1 - beta2``) makes it one fused ``addcmul_``;
    a 0-dim tensor ``value`` (data-dependent, e.g. Prodigy's ``d^2 (1 - beta2)``) costs one pass writing
    ``value * x`` into ``buffer`` (shaped like ``x``), instead of reading ``value`` on the host.
    """
    if isinstance(value, torch.Tensor):
        if buffer is None:
            raise ValueError("ema_square_ with a tensor value needs a work buffer shaped like x")
        return y.mul_(keep).addcmul_(x, torch.mul(x, value, out=buffer))
    return y.mul_(keep).addcmul_(x, x, value=value)


class ScopedScalarOptimizer(OptregOptimizer):
    """Base of optimizers whose step size comes from estimates shared by a scope of param groups.

    Subclasses set ``SCALARS`` (the estimator's scalar names) and implement
    :meth:`_initial_scalars` (their starting values for a group) and
    :meth:`_step_scope`. The scalars are stored in every group of the scope
    (the same values), so ``param_groups[i]["d"]`` always shows the estimate that
    group steps with.
    """

    SCALARS: tuple[str, ...] = ()
    #: The scalar that times a group's ``lr`` gives its step size (``d``, ``eta``), for :meth:`effective_lrs`.
    STEP_SCALAR: str | None = None
    TRANSIENT = ("scratch",)
    #: The ``compile`` option: an attribute, not a param-group option, so a checkpoint keeps its layout
    #: (and an optimizer pickled before the option existed stays eager).
    compile: CompileSetting = False
    #: Whether ``compile = "auto"`` compiles this algorithm on a large model: false where the compiled passes
    #: measured no faster than eager (their global sums are inductor reductions slower than the eager ones).
    AUTO_COMPILE: bool = True

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], *, per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        self.per_group_d = bool(per_group_d)
        self.compile = check_compile_setting(compile)
        self._init_transient()
        super().__init__(params, defaults)

    def compiling(self) -> bool:
        """Whether this step takes the compiled path (``compile``, by :func:`optreg.compiling.use_compile`;
        ``"auto"`` stays eager for an algorithm whose compiled path does not pay, :attr:`AUTO_COMPILE`)."""
        return use_compile(auto_setting(self.compile, self.AUTO_COMPILE), self)

    def _init_transient(self) -> None:
        self.scratch = Scratch()

    # -- scalars

    def _initial_scalars(self, group: Mapping[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        device = group_device(group)
        for key, value in self._initial_scalars(group).items():
            if key not in group:
                group[key] = as_scalar(value, device)

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        for group in self.param_groups:  # a checkpoint may have been mapped to another device
            device = group_device(group)
            for key in self.SCALARS:
                if key in group:
                    group[key] = as_scalar(group[key], device)

    def scopes(self) -> list[list[dict[str, Any]]]:
        """Groups that share one estimate: all of them, or each alone with ``per_group_d``."""
        if self.per_group_d:
            return [[g] for g in self.param_groups]
        return [list(self.param_groups)]

    @staticmethod
    def _write(scope: list[dict[str, Any]], values: Mapping[str, torch.Tensor]) -> None:
        for group in scope:
            group.update(values)

    def _estimate(self, key: str) -> float | list[float]:
        """The scalar ``key`` (``d``, ``eta``) for logging: one number, or one per group with ``per_group_d``."""
        values = [float(group[key]) for group in self.param_groups]
        return values if self.per_group_d else values[0]

    def effective_lrs(self) -> list[float]:
        """Each group's step size at its last step, ``lr`` times the estimate (what optreg train logs as the
        effective LR); just ``lr`` for a class without a :attr:`STEP_SCALAR`."""
        key = self.STEP_SCALAR
        return [float(g["lr"]) * (float(g[key]) if key else 1.0) for g in self.param_groups]

    # -- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Take one step; ``closure`` re-evaluates the loss, ``step_factor`` (0/1 tensor) gates the step."""
        loss = run_closure(closure)
        for scope in self.scopes():
            device = scope[0][self.SCALARS[0]].device
            factor = prepare_step_factor(step_factor, device)
            self._step_scope(scope, factor, loss)
        return loss

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _gate(step_factor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The step factor as a scalar like ``like`` (ones when no factor was given)."""
        if step_factor is None:
            return torch.ones_like(like)
        return step_factor.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _lr_of(group: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
        return as_scalar(group["lr"], like.device)


def check_growth_rate(growth_rate: float | None) -> None:
    """``growth_rate`` unset, or >= 1 (the spec's bound and words)."""
    if growth_rate is not None:
        check_number("growth_rate", growth_rate, ge=1)


class AdamCoefficients(NamedTuple):
    """Per-group scalars shared by the Adam-style estimators (D-Adapt AdamW and Prodigy)."""

    beta1: float
    beta2: float
    active: torch.Tensor  # 1 where the group's lr is not 0 (a group at lr 0 neither moves nor feeds d)
    gate: torch.Tensor  # step_factor x active
    dlr: torch.Tensor  # d x lr x bias correction
    keep1: torch.Tensor  # beta1 where the step is taken, 1 where it is skipped
    keep2: torch.Tensor  # the same for beta2


def adam_coefficients(
    group: Mapping[str, Any], d: torch.Tensor, k: torch.Tensor, step_factor: torch.Tensor, lr: torch.Tensor
) -> AdamCoefficients:
    """The gated EMA factors and the step size ``d * lr * bias_correction`` of one param group."""
    beta1, beta2 = group["betas"]
    active = (lr != 0).to(d.dtype)
    gate = step_factor * active
    if group["use_bias_correction"]:
        bias_correction = torch.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1))
    else:
        bias_correction = torch.ones_like(d)
    keep1 = keep_factor(gate, beta1)
    keep2 = keep_factor(gate, beta2)
    return AdamCoefficients(beta1, beta2, active, gate, d * lr * bias_correction, keep1, keep2)
