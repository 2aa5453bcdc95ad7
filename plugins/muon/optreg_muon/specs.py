"""Specs of the Muon family: ``muon``, ``normuon``, ``dion`` and ``dion2``.

Each routes parameters by role (see :mod:`optreg.groups`): ``matrix`` params take
the orthogonalized update, embeddings, the output head, biases and norms take
AdamW inside the same optimizer with ``adam_lr``, ``adam_betas``, ``adam_eps`` and
``adam_weight_decay`` (or Lion with the same options: ``non_matrix_algorithm``).
``optreg groups SPEC`` prints where each parameter goes.
In a ``[[optimizer.group_overrides]]`` entry, ``lr`` and ``weight_decay`` set the
matched parameters' values whichever update they use.

Under a parallelism strategy (optreg-parallel: ``ddp``, ``fsdp``, ``hsdp``, ``tp``, ``fsdp_tp``) Muon and
NorMuon orthogonalize each whole matrix on one rank and send every rank its rows (``sharded_ns``, see
:mod:`optreg_muon.functional.distributed`); layouts not split there are gathered whole on every rank
(:mod:`optreg_muon.functional.sharded`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg import BuildContext, FieldValueError, OptimizerSpec, field
from optreg.memory import StateTensor, scalar
from optreg.specs import MAX_COUNT

if TYPE_CHECKING:
    import torch

    from optreg.memory import ParamShape

__all__ = ["ALL_SPECS", "Dion2Spec", "DionSpec", "MuonSpec", "NorMuonSpec"]

Preset = Literal["muon", "polar_express", "dion", "turbo_aol"]
Triple = tuple[float, float, float]
AdjustLR = Literal["spectral_norm", "rms_norm", "match_rms_adamw", "none"]


def _meshes(context: BuildContext) -> dict[str, Any] | None:
    """The strategy's device meshes by role (``optreg.parallel``), for the matrix step to split its work."""
    strategy = context.strategy
    if strategy is None:
        return None
    from optreg.parallel import ROLES

    return {role: strategy.mesh(role) for role in ROLES}


def _check_newton_schulz(spec: Any) -> None:
    """Newton-Schulz options that can never run, refused when the spec is read: Triton in float64, and an
    empty list of coefficients."""
    if spec.ns_dtype == "float64" and spec.ns_backend == "triton":
        raise FieldValueError(
            "ns_backend", "the Triton kernels run bfloat16 or float32; ns_dtype = 'float64' needs 'torch' or 'auto'"
        )
    if not isinstance(spec.ns_coefficients, str) and len(spec.ns_coefficients) == 0:
        raise FieldValueError("ns_coefficients", "give a preset name, one (a, b, c) triple or triples, not []")


def _check_triton_here(spec: Any, param_groups: list[dict[str, Any]]) -> None:
    """``ns_backend = "triton"`` where the parameters live: refused at build (a spec written for a GPU machine
    still reads anywhere), rather than at the first step."""
    if spec.ns_backend != "triton":
        return
    from optreg_muon.functional import triton_ns

    for group in param_groups:
        for p in group["params"]:
            tensor = p[1] if isinstance(p, tuple) else p
            if tensor.ndim >= 2 and not triton_ns.available(tensor.device):
                raise FieldValueError("ns_backend", triton_ns.unavailable_reason(tensor.device) + "; use 'auto'")


@attrs.frozen(kw_only=True)
class _RoutedSpec(OptimizerSpec):
    """Options shared by the family: the AdamW branch for non-matrix parameters."""

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})
    ALGORITHM: ClassVar[str] = ""

    adam_lr: float = field(3e-4, ge=0, per_group=False, doc="LR of the AdamW update of non-matrix parameters.")
    adam_betas: tuple[float, float] = field(
        (0.9, 0.95), ge=0, lt=1, per_group=False, doc="AdamW betas for non-matrix parameters."
    )
    adam_eps: float = field(1e-8, ge=0, per_group=False, doc="AdamW eps for non-matrix parameters.")
    adam_weight_decay: float = field(
        0.0, ge=0, per_group=False, doc="AdamW decoupled weight decay for non-matrix parameters."
    )
    non_matrix_algorithm: Literal["adamw", "lion"] = field(
        "adamw",
        per_group=False,
        doc="Update of embeddings, head, biases and norms: adamw (optreg-adam) or lion (optreg-sign); "
        "the adam_* options parametrize either (lion ignores adam_eps).",
    )
    foreach: bool | None = field(
        None,
        per_group=False,
        doc="Batch row blocks of one shape into one Newton-Schulz call. None: where it pays (every block off CPU; "
        "on CPU blocks of up to 2**17 elements per thread); true: every size (fewer, larger calls: on CPU a few "
        "percent slower on idle cores, faster when other processes compete for them); false: one call per "
        "block, the ops of torch.optim.Muon. Not the torch._foreach_* path; no effect on dion's matrices.",
    )

    def role_options(self, role: str) -> dict[str, Any] | None:
        if role == "matrix":
            return {"algorithm": self.ALGORITHM}
        return {
            "algorithm": self.non_matrix_algorithm,
            "lr": self.adam_lr,
            "betas": self.adam_betas,
            "eps": self.adam_eps,
            "weight_decay": self.adam_weight_decay,
        }

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """AdamW's exp_avg, exp_avg_sq and float32 step, Lion's exp_avg, or the matrix update's (none if empty)."""
        algorithm = options.get("algorithm")
        if algorithm is None:  # a group without one is routed by ndim, as the optimizer does
            algorithm = self.ALGORITHM if len(param.shape) >= 2 else options.get(
                "non_matrix_algorithm", self.non_matrix_algorithm)
        if algorithm == "adamw":
            return [param.like("exp_avg"), param.like("exp_avg_sq"), scalar("step", "float32")]
        if algorithm == "lion":
            return [param.like("exp_avg")]
        if math.prod(param.shape) == 0:
            return []
        return self.matrix_state_layout(param, options)

    def matrix_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """One non-empty matrix's state: a momentum buffer like the parameter (Muon's EMA, Dion2's momentum)."""
        return [param.like("momentum_buffer")]


@attrs.frozen(kw_only=True)
class MuonSpec(_RoutedSpec):
    """Muon: EMA momentum, then Newton-Schulz orthogonalization of each matrix update.

    Matrices (the ``matrix`` role) get ``lr * ratio * NS(momentum)``, everything else
    AdamW (or Lion: ``non_matrix_algorithm``). Orthogonalized updates equalise all directions of a matrix update, which
    trains hidden layers faster than AdamW at equal steps. With ``ns_coefficients =
    "muon"``, 5 steps, ``preconditioning = "frobenius"``, ``adjust_lr = "spectral_norm"``
    and ``nesterov = true`` the matrix update equals ``torch.optim.Muon`` (bit for bit per matrix
    with ``ns_backend = "torch"`` and ``foreach = false``; batched bf16 products may round differently).
    """

    TYPE: ClassVar[str] = "muon"
    ALGORITHM: ClassVar[str] = "muon"
    PAPER: ClassVar[str] = "Jordan et al. 2024, Muon: An optimizer for hidden layers in neural networks"

    lr: float = field(0.02, ge=0, doc="LR of the orthogonalized matrix update.")
    momentum: float = field(0.95, ge=0, lt=1, doc="EMA momentum of the matrix update.")
    nesterov: bool = field(True, doc="Nesterov momentum (torch's: lerp(grad, buf, momentum)).")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay of matrices (p *= 1 - lr * wd).")
    cautious_wd: bool = field(False, doc="Decay only where the update and the parameter have the same sign.")
    ns_steps: int = field(5, ge=1, le=99, doc="Newton-Schulz iterations.")
    ns_coefficients: Preset | Triple | tuple[Triple, ...] = field(
        "muon",
        doc="A preset (muon, polar_express, dion, turbo_aol), one (a, b, c) for every step, "
        "or one triple per step (the last one repeats).",
    )
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = field(
        "frobenius", doc="How the input is scaled to spectral norm <= 1 before the iteration."
    )
    adjust_lr: AdjustLR = field(
        "spectral_norm",
        doc="LR factor by shape: spectral_norm = sqrt(max(1, rows/cols)); rms_norm / match_rms_adamw = "
        "0.2 * sqrt(max(rows, cols)); none = 1.",
    )
    eps: float = field(1e-7, gt=0, doc="Floor of the norm in the Frobenius normalisation.")
    ns_dtype: Literal["bfloat16", "float32", "float64"] = field(
        "bfloat16",
        doc="Precision of the Newton-Schulz iteration: bfloat16 (as torch.optim.Muon), float32, or float64 "
        "(float64 params: then no part of a step rounds below float64; torch kernel only).",
    )
    ns_backend: Literal["auto", "torch", "triton"] = field(
        "auto", doc="Kernel: auto (Triton on CUDA if installed, else torch), torch, or triton."
    )
    flatten: bool = field(True, doc="Flatten 3-D+ params to (shape[0], rest); false: a batch of matrices.")
    split_sizes: tuple[int, ...] = field(
        (), ge=1, le=MAX_COUNT, doc="Row blocks orthogonalized separately (e.g. [d, d, d] for a fused QKV weight)."
    )
    num_heads: int = field(1, ge=1, le=MAX_COUNT, doc="Split each row block into this many per-head blocks.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")
    sharded_ns: Literal["exact", "local"] = field(
        "exact",
        doc="Under ddp / fsdp / hsdp: exact = each whole matrix orthogonalized by one rank (all-to-all of row "
        "shards, results resharded; the single-process update); local = Newton-Schulz on each rank's own row "
        "shard (no communication, an approximation; equals exact for replicated params).",
    )

    def __attrs_post_init__(self) -> None:
        if self.num_heads > 1 and any(s % self.num_heads for s in self.split_sizes):
            raise FieldValueError("num_heads", f"every split size must be divisible by num_heads={self.num_heads}")
        _check_newton_schulz(self)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        _check_triton_here(self, param_groups)
        from optreg_muon.optim import Muon

        return Muon(param_groups, **self.optimizer_kwargs(), meshes=_meshes(context))


@attrs.frozen(kw_only=True)
class NorMuonSpec(MuonSpec):
    """NorMuon: Muon plus neuron-wise (per-row) second-moment normalisation of the orthogonalized update.

    Orthogonalized updates can still have very uneven row norms; NorMuon keeps an
    EMA of each row's mean square and divides by its root, then rescales to the
    norm of an orthogonal matrix. The default ``adjust_lr = "match_rms_adamw"`` is
    the paper's step ``0.2 * lr * sqrt(rows * cols) / ||O||_F``.
    """

    TYPE: ClassVar[str] = "normuon"
    ALGORITHM: ClassVar[str] = "normuon"
    PAPER: ClassVar[str] = "Li et al. 2025, NorMuon: Making Muon more efficient and scalable (arXiv 2510.05491)"

    nesterov: bool = field(False, doc="Nesterov momentum (the paper uses plain momentum).")
    adjust_lr: AdjustLR = field("match_rms_adamw", doc="LR factor by shape (see muon); the paper's is match_rms_adamw.")
    muon_beta2: float = field(0.95, ge=0, lt=1, doc="EMA factor of the per-row second moment.")
    normuon_eps: float = field(1e-8, gt=0, doc="Added to the root of the second moment.")

    def matrix_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Muon's momentum and second_moment, one per row of the whole matrix view, float32 or the param's if wider."""
        import torch

        shape = tuple(param.shape)
        view = (shape[0], math.prod(shape[1:])) if len(shape) > 2 and options["flatten"] else shape
        work = torch.promote_types(param.dtype, torch.float32)
        return [param.like("momentum_buffer"), StateTensor("second_moment", (*view[:-1], 1), work)]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        _check_triton_here(self, param_groups)
        from optreg_muon.optim import NorMuon

        return NorMuon(param_groups, **self.optimizer_kwargs(), meshes=_meshes(context))


@attrs.frozen(kw_only=True)
class DionSpec(_RoutedSpec):
    """Dion: low-rank orthonormalized updates by power iteration + QR with error feedback.

    Each matrix keeps a momentum ``M`` and a right basis ``Q`` of rank ``r``; one
    power-iteration step per optimizer step gives ``P Q^T``, an orthonormal rank-``r``
    update, and the part of the momentum it used is removed (error feedback), so
    what low rank leaves out is applied later. Designed to shard well: only
    ``m x r`` and ``n x r`` factors need communicating.
    """

    TYPE: ClassVar[str] = "dion"
    ALGORITHM: ClassVar[str] = "dion"
    PAPER: ClassVar[str] = "Ahn et al. 2025, Dion: Distributed Orthonormalized Updates (arXiv 2504.05295)"

    lr: float = field(0.02, ge=0, doc="LR of the orthonormalized matrix update.")
    mu: float = field(0.95, ge=0, lt=1, doc="Momentum factor (share of the used momentum kept).")
    rank_fraction: float = field(1.0, gt=0, le=1, doc="Rank r as a fraction of min(rows, cols).")
    rank_multiple_of: int = field(1, ge=1, le=MAX_COUNT, doc="Round r up to a multiple of this.")
    power_iters: int = field(
        1, ge=1, le=1024,
        doc="Power-iteration steps per optimizer step (at most 1024: each is a matmul).",
    )
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay of matrices.")
    cautious_wd: bool = field(False, doc="Decay only where the update and the parameter have the same sign.")
    adjust_lr: AdjustLR = field("spectral_norm", doc="LR factor by shape (see muon).")
    eps: float = field(1e-8, gt=0, doc="Added to column norms when normalising the right basis.")
    flatten: bool = field(True, doc="Flatten 3-D+ params to (shape[0], rest) (Dion needs matrices).")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")
    seed: int = field(0, ge=0, per_group=False, doc="Seed of the random initial right bases.")

    def __attrs_post_init__(self) -> None:
        if not self.flatten:
            raise FieldValueError("flatten", "dion orthonormalizes 2-D matrices; 3-D+ params need flatten = true")

    def matrix_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The momentum like the param and Q (cols x r, param dtype; rows split as a 2-D param's columns are)."""
        from optreg_muon.functional.matrix import dion_rank

        rows, cols = param.shape[0], math.prod(param.shape[1:])
        r = dion_rank(rows, cols, options["rank_fraction"], options["rank_multiple_of"])
        local_cols = param.local_shape[1] if len(param.shape) == 2 else cols
        return [param.like("momentum_buffer"), StateTensor("Q", (local_cols, r), param.dtype)]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_muon.optim import Dion

        return Dion(param_groups, **self.optimizer_kwargs(), meshes=_meshes(context))


@attrs.frozen(kw_only=True)
class Dion2Spec(_RoutedSpec):
    """Dion2: Newton-Schulz on the alpha-fraction of each matrix's rows (or columns) with the largest momentum.

    Each step adds the gradient to the momentum ``M``, selects the ``ceil(fraction * n)`` rows of ``M``
    (columns when the matrix is tall) with the largest L1 norms, orthogonalizes that submatrix with Muon's
    Newton-Schulz and moves only those rows of the weight; the selected rows of ``M`` decay by
    ``ef_decay`` (error feedback), the others keep accumulating until they are selected. Newton-Schulz
    costs about ``fraction`` of Muon's (a quarter by default); ``fraction = 1`` is Muon without Nesterov.
    """

    TYPE: ClassVar[str] = "dion2"
    ALGORITHM: ClassVar[str] = "dion2"
    PAPER: ClassVar[str] = (
        "Ahn, Amsel, Langford 2025, Dion2: A Simple Method to Shrink Matrix in Muon (arXiv 2512.16928)"
    )

    lr: float = field(0.02, ge=0, doc="LR of the orthogonalized matrix update.")
    fraction: float = field(0.25, gt=0, le=1, doc="Share of the rows (or columns) orthogonalized and updated per step.")
    ef_decay: float = field(
        0.95, ge=0, le=1, doc="Error-feedback decay: the selected rows of the momentum are multiplied by it."
    )
    select_dim: Literal["auto", "rows", "cols"] = field(
        "auto", doc="Select rows or columns; auto: the shorter side (rows when rows <= cols)."
    )
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay of matrices (every row, p *= 1 - lr * wd).")
    cautious_wd: bool = field(
        False, doc="Decay only where the update and the parameter have the same sign (so only the selected rows)."
    )
    ns_steps: int = field(5, ge=1, le=99, doc="Newton-Schulz iterations.")
    ns_coefficients: Preset | Triple | tuple[Triple, ...] = field(
        "polar_express",
        doc="A preset (muon, polar_express, dion, turbo_aol), one (a, b, c) for every step, or one triple per "
        "step (the last one repeats); the reference uses polar_express.",
    )
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = field(
        "frobenius", doc="How the submatrix is scaled to spectral norm <= 1 before the iteration."
    )
    adjust_lr: AdjustLR = field("spectral_norm", doc="LR factor by the whole matrix's shape (see muon).")
    eps: float = field(1e-7, gt=0, doc="Floor of the norm in the Frobenius normalisation.")
    ns_dtype: Literal["bfloat16", "float32", "float64"] = field(
        "bfloat16", doc="Precision of the Newton-Schulz iteration (see muon)."
    )
    ns_backend: Literal["auto", "torch", "triton"] = field(
        "auto", doc="Kernel: auto (Triton on CUDA if installed, else torch), torch, or triton."
    )
    flatten: bool = field(True, doc="Flatten 3-D+ params to (shape[0], rest); false: a batch of matrices.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")

    def __attrs_post_init__(self) -> None:
        _check_newton_schulz(self)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        _check_triton_here(self, param_groups)
        from optreg_muon.optim import Dion2

        return Dion2(param_groups, **self.optimizer_kwargs(), meshes=_meshes(context))


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type, ...] = (MuonSpec, NorMuonSpec, DionSpec, Dion2Spec)
