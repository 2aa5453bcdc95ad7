"""Optimizer specs: each builds the ``torch.optim`` class of the same name with the spec's options.

The optimizer *is* torch's class (same state, same ``state_dict``, same numbers); the spec adds what a
TOML table needs: strict types and bounds checked when the spec loads, a doc per option, and the
paper. Every spec names its torch class (``TORCH_CLASS``) and every constructor argument it does not
offer, with the reason (``LEFT_OUT``); ``tests/test_signatures.py`` compares that with
``inspect.signature`` of the installed torch, so a torch release that adds or renames an argument, or
changes a default, fails a test until the spec says what to do with it.

No torch import at module load: the registry imports this module for every ``optreg`` command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

import optreg
from optreg.memory import StateTensor, scalar
from optreg.specs import MAX_COUNT, StepInput

if TYPE_CHECKING:
    import torch

    from optreg.memory import GroupShape, ParamShape

__all__ = [
    "ASGDSpec",
    "AdadeltaSpec",
    "AdafactorSpec",
    "AdagradSpec",
    "AdamaxSpec",
    "LBFGSSpec",
    "NAdamSpec",
    "OPTIMIZER_SPECS",
    "RAdamSpec",
    "RMSpropSpec",
    "RpropSpec",
    "SparseAdamSpec",
    "TorchOptimizerSpec",
]

#: Why the arguments most torch optimizers share are not spec options.
DIFFERENTIABLE = (
    "autograd through the optimizer step itself (meta-learning, learned optimizers): a spec builds an "
    "optimizer for training, whose step runs under no_grad"
)
CAPTURABLE = (
    "keeps the step's scalars on the device for CUDA-graph capture of the step; optreg's loops capture no "
    "graphs, and on CPU torch refuses it"
)


def _foreach_field() -> Any:
    return optreg.field(
        None, per_group=False, doc="Use torch's multi-tensor (foreach) path; None: torch decides by device."
    )


def _maximize_field() -> Any:
    return optreg.field(False, doc="Maximize the objective instead of minimizing.")


def _l2_field(default: float = 0.0) -> Any:
    return optreg.field(default, ge=0, doc="L2 penalty: `weight_decay * p` is added to the gradient.")


def _betas_field(default: tuple[float, float] = (0.9, 0.999)) -> Any:
    return optreg.field(default, ge=0, lt=1, doc="EMA factors of the first and second moments.")


@attrs.frozen(kw_only=True)
class TorchOptimizerSpec(optreg.OptimizerSpec):
    """Base of the specs that build a ``torch.optim`` class (``TORCH_CLASS``) with their options.

    ``LEFT_OUT``: constructor arguments of the torch class that are not options, each with why.
    ``RENAMED``: a torch argument that the spec spells as other fields (e.g. Adafactor's ``eps`` pair
    as ``eps1`` and ``eps2``), mapped to those fields; :meth:`torch_kwargs` puts it back together.
    ``COMPLEX_REFUSAL``: why the class cannot step complex parameters (then building on one is a
    ``TypeError`` at construction rather than torch's error at the first step), or ``None``.
    ``SHARDING_REFUSAL``: why the class cannot step sharded (``DTensor``) parameters, as FSDP, HSDP and
    tensor parallel make them (then building on them is a ``SpecError`` naming the strategy, rather
    than a ``DTensor`` error at the first step), or ``None``.
    """

    TORCH_CLASS: ClassVar[str] = ""
    LEFT_OUT: ClassVar[Mapping[str, str]] = {}
    RENAMED: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    COMPLEX_REFUSAL: ClassVar[str | None] = None
    SHARDING_REFUSAL: ClassVar[str | None] = None

    def torch_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the torch class (``optimizer_kwargs()`` with renamed fields put back)."""
        return self.optimizer_kwargs()

    def torch_class(self) -> type[torch.optim.Optimizer]:
        """The ``torch.optim`` class this spec builds (torch is imported here, not when specs load)."""
        import torch

        return getattr(torch.optim, self.TORCH_CLASS)

    def create(self, param_groups: list[dict[str, Any]], context: optreg.BuildContext) -> torch.optim.Optimizer:
        params = [p[1] if isinstance(p, tuple) else p for group in param_groups for p in group["params"]]
        if self.COMPLEX_REFUSAL is not None:
            from optreg.optim import refuse_complex

            refuse_complex(params, self.TORCH_CLASS, self.COMPLEX_REFUSAL)
        if self.SHARDING_REFUSAL is not None:
            from optreg.optim import is_sharded

            if any(is_sharded(p) for p in params):
                where = context.strategy.describe() if context.strategy is not None else "a sharding strategy"
                raise optreg.SpecError(
                    f"{self.TYPE} (torch.optim.{self.TORCH_CLASS}) cannot step the sharded (DTensor) parameters of "
                    f"{where}: {self.SHARDING_REFUSAL}; use ddp (or single), which keeps whole parameters",
                    path="$.type",
                )
        return self.torch_class()(param_groups, **self.torch_kwargs())


def _scalar_dtype(fused: bool | None = None) -> str:
    """The dtype of torch's 0-dim state scalars (``torch.optim.optimizer._get_scalar_dtype``): float64 when the
    *default* dtype is float64 (whatever the parameters' dtype), else float32; a fused kernel's: float32."""
    import torch

    return "float64" if not fused and torch.get_default_dtype() == torch.float64 else "float32"


def _check_foreach_fused(spec: Any) -> None:
    if spec.foreach and spec.fused:
        raise optreg.FieldValueError("fused", "choose foreach or fused, not both")


@attrs.frozen(kw_only=True)
class AdadeltaSpec(TorchOptimizerSpec):
    """Adadelta: steps scaled by the ratio of RMS of past updates to RMS of gradients (``torch.optim.Adadelta``).

    Per step, with ``g`` the gradient (plus ``weight_decay * p``)::

        v     <- rho * v + (1 - rho) * g^2
        delta <- sqrt(u + eps) / sqrt(v + eps) * g
        u     <- rho * u + (1 - rho) * delta^2
        p     <- p - lr * delta

    The paper has no ``lr`` (it is 1.0, torch's default).
    """

    TYPE: ClassVar[str] = "adadelta"
    PAPER: ClassVar[str] = "Zeiler 2012, ADADELTA: An Adaptive Learning Rate Method, arXiv:1212.5701"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "Adadelta"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(1.0, ge=0, doc="Scale of the update (the paper's method is lr = 1).")
    rho: float = optreg.field(0.9, ge=0, le=1, doc="EMA factor of the squared gradients and squared updates.")
    eps: float = optreg.field(1e-6, ge=0, doc="Added inside both square roots.")
    weight_decay: float = _l2_field()
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The EMAs of squared gradients and squared updates, and torch's 0-dim step scalar."""
        return [scalar("step", _scalar_dtype()), param.like("square_avg"), param.like("acc_delta")]


@attrs.frozen(kw_only=True)
class AdafactorSpec(TorchOptimizerSpec):
    """Adafactor: factored second moments (row and column EMAs) for matrices (``torch.optim.Adafactor``).

    For a matrix ``p`` with gradient ``g`` at step ``t`` (vectors keep a full second moment ``v``)::

        beta2 = 1 - t^beta2_decay
        rho   = min(lr, 1 / sqrt(t))
        alpha = max(eps2, RMS(p)) * rho
        p     <- p * (1 - lr * weight_decay)
        r     <- beta2 * r + (1 - beta2) * mean_cols(g^2)    (row EMA)
        c     <- beta2 * c + (1 - beta2) * mean_rows(g^2)    (column EMA)
        v     = r c^T / max(mean(r), eps1)
        u     = g / sqrt(max(v, eps1^2))
        p     <- p - alpha * u / max(1, RMS(u) / d)

    torch's variant: no first moment, ``eps1`` defaults to the dtype's machine epsilon, weight decay
    decoupled; the relative step is always on (an explicit ``lr`` caps it).
    """

    TYPE: ClassVar[str] = "adafactor"
    PAPER: ClassVar[str] = (
        "Shazeer & Stern 2018, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, arXiv:1804.04235"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "Adafactor"
    RENAMED: ClassVar[Mapping[str, tuple[str, ...]]] = {"eps": ("eps1", "eps2")}
    COMPLEX_REFUSAL: ClassVar[str | None] = "torch's Adafactor factors real second moments only"
    SHARDING_REFUSAL: ClassVar[str | None] = "its in-place norm of the update fails on DTensors (torch 2.13)"

    lr: float = optreg.field(1e-2, ge=0, doc="Cap of the relative step size min(lr, 1 / sqrt(t)).")
    beta2_decay: float = optreg.field(
        -0.8, le=0, doc="The second-moment EMA factor is 1 - t^beta2_decay (t the step)."
    )
    eps1: float | None = optreg.field(
        None, ge=0, per_group=False, kwarg=False,
        doc="Floor of the second moment (squared); leave out for the parameter dtype's machine epsilon "
        "(torch's eps[0]).",
    )
    eps2: float = optreg.field(
        1e-3, ge=0, per_group=False, kwarg=False, doc="Floor of a parameter's RMS in the step size (torch's eps[1])."
    )
    d: float = optreg.field(1.0, ge=1, doc="Clipping threshold of the update's RMS.")
    weight_decay: float = optreg.field(0.0, ge=0, doc="Decoupled weight decay: p *= 1 - lr * weight_decay.")
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def torch_kwargs(self) -> dict[str, Any]:
        return {**self.optimizer_kwargs(), "eps": (self.eps1, self.eps2)}

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """A row and a column second-moment EMA (last / second-to-last dim reduced to 1) for a parameter of 2+
        dims, a full one for a vector or scalar; and torch's 0-dim step scalar."""
        step = scalar("step", _scalar_dtype())
        shape = param.local_shape
        if len(shape) < 2:
            return [step, param.like("variance")]
        return [
            step,
            StateTensor("row_var", (*shape[:-1], 1), param.dtype),
            StateTensor("col_var", (*shape[:-2], 1, shape[-1]), param.dtype),
        ]


@attrs.frozen(kw_only=True)
class AdagradSpec(TorchOptimizerSpec):
    """Adagrad: per-coordinate steps scaled by the root of the summed squared gradients (``torch.optim.Adagrad``).

    Per step ``t`` (from 1), with ``g`` the gradient (plus ``weight_decay * p``)::

        lr_t = lr / (1 + (t - 1) * lr_decay)
        s    <- s + g^2                      (s starts at initial_accumulator_value)
        p    <- p - lr_t * g / (sqrt(s) + eps)
    """

    TYPE: ClassVar[str] = "adagrad"
    PAPER: ClassVar[str] = (
        "Duchi, Hazan & Singer 2011, Adaptive Subgradient Methods for Online Learning and Stochastic Optimization, "
        "JMLR 12"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "Adagrad"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(1e-2, ge=0, doc="Learning rate.")
    lr_decay: float = optreg.field(0.0, ge=0, doc="The LR at step t is lr / (1 + (t - 1) * lr_decay).")
    weight_decay: float = _l2_field()
    initial_accumulator_value: float = optreg.field(0.0, ge=0, doc="Start value of the sum of squared gradients.")
    eps: float = optreg.field(1e-10, ge=0, doc="Added to the denominator.")
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()
    fused: bool | None = optreg.field(
        None, per_group=False, doc="Use torch's fused kernel (CPU only in torch); None: torch decides."
    )

    def __attrs_post_init__(self) -> None:
        _check_foreach_fused(self)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The sum of squared gradients and torch's 0-dim step scalar (float32 under the fused kernel)."""
        return [scalar("step", _scalar_dtype(options.get("fused"))), param.like("sum")]


@attrs.frozen(kw_only=True)
class AdamaxSpec(TorchOptimizerSpec):
    """Adamax: Adam with the infinity norm in place of the second moment (``torch.optim.Adamax``).

    Per step ``t``, with ``g`` the gradient (plus ``weight_decay * p``)::

        m <- beta1 * m + (1 - beta1) * g
        u <- max(beta2 * u, |g| + eps)
        p <- p - lr / (1 - beta1^t) * m / u
    """

    TYPE: ClassVar[str] = "adamax"
    PAPER: ClassVar[str] = "Kingma & Ba 2015, Adam: A Method for Stochastic Optimization (section 7.1), arXiv:1412.6980"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "Adamax"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(2e-3, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = _betas_field()
    eps: float = optreg.field(1e-8, ge=0, doc="Added to |g| inside the running maximum.")
    weight_decay: float = _l2_field()
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The first moment, the running infinity norm and torch's 0-dim step scalar."""
        return [scalar("step", _scalar_dtype()), param.like("exp_avg"), param.like("exp_inf")]


@attrs.frozen(kw_only=True)
class ASGDSpec(TorchOptimizerSpec):
    """Averaged SGD: SGD with a decaying step size and a running average of the iterates (``torch.optim.ASGD``).

    Per step ``t`` (from 1), with ``g`` the gradient (plus ``weight_decay * p``), ``eta`` and ``mu``
    from the previous step (``eta = lr``, ``mu = 1`` at first)::

        p   <- p * (1 - lambd * eta) - eta * g
        ax  <- ax + (p - ax) * mu          (ax = p while mu = 1)
        eta = lr / (1 + lambd * lr * t)^alpha
        mu  = 1 / max(1, t - t0)

    The average ``ax`` is in the state (``optimizer.state[p]["ax"]``): evaluate with it, as the
    paper does; the parameters themselves are the SGD iterates.
    """

    TYPE: ClassVar[str] = "asgd"
    PAPER: ClassVar[str] = (
        "Polyak & Juditsky 1992, Acceleration of Stochastic Approximation by Averaging, SIAM J. Control Optim. 30(4)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "ASGD"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(1e-2, ge=0, doc="Learning rate.")
    lambd: float = optreg.field(1e-4, ge=0, doc="Decay term of the step size (and the shrinkage of p).")
    alpha: float = optreg.field(0.75, ge=0, doc="Power of the step-size decay.")
    t0: float = optreg.field(1e6, ge=0, doc="Step at which averaging starts.")
    weight_decay: float = _l2_field()
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The iterate average ``ax`` and torch's three 0-dim scalars (step, eta, mu)."""
        dtype = _scalar_dtype()
        return [scalar("step", dtype), scalar("eta", dtype), scalar("mu", dtype), param.like("ax")]


@attrs.frozen(kw_only=True)
class LBFGSSpec(TorchOptimizerSpec):
    """L-BFGS: quasi-Newton steps from a short history of gradient differences (``torch.optim.LBFGS``).

    **Needs a closure** that zeroes the gradients, recomputes the loss on the same batch, calls
    ``backward()`` and returns the loss: ``optimizer.step(closure)`` evaluates it up to ``max_eval``
    times. Each step runs up to ``max_iter`` iterations of::

        d  = -H g          (H: the two-loop recursion over the last history_size pairs (s, y))
        p  <- p + t * d    (t = lr, or from the strong Wolfe line search)
        s  = t * d,  y = g_new - g

    stopping early when max |g| <= tolerance_grad or the change in loss or step <= tolerance_change.
    One parameter group only (torch's L-BFGS takes no per-group options), so no ``group_overrides``.
    """

    TYPE: ClassVar[str] = "lbfgs"
    PAPER: ClassVar[str] = (
        "Liu & Nocedal 1989, On the Limited Memory BFGS Method for Large Scale Optimization, Math. Prog. 45"
    )
    TORCH_CLASS: ClassVar[str] = "LBFGS"
    STEP_INPUT: ClassVar[StepInput] = "closure"  # its line search re-evaluates the loss and gradients
    SHARDING_REFUSAL: ClassVar[str | None] = "it flattens every parameter into one vector, which DTensors refuse"

    lr: float = optreg.field(1.0, ge=0, doc="Step length (the line search's first trial with strong_wolfe).")
    max_iter: int = optreg.field(20, ge=1, le=MAX_COUNT, doc="Iterations per optimizer.step().")
    max_eval: int | None = optreg.field(
        None, ge=1, le=MAX_COUNT, doc="Closure evaluations per optimizer.step(); leave out for max_iter * 5 // 4."
    )
    tolerance_grad: float = optreg.field(1e-7, ge=0, doc="Stop when max |g| is at most this.")
    tolerance_change: float = optreg.field(1e-9, ge=0, doc="Stop when the loss or the step changes by at most this.")
    history_size: int = optreg.field(
        100, ge=1, le=2**16, doc="Number of (s, y) pairs kept (each pair is two copies of the parameters)."
    )
    line_search_fn: Literal["strong_wolfe"] | None = optreg.field(
        None, doc="`strong_wolfe` for torch's line search; leave out for fixed steps of lr."
    )

    def __attrs_post_init__(self) -> None:
        if self.group_overrides:
            raise optreg.FieldValueError(
                "group_overrides", "lbfgs optimizes one parameter group: torch's LBFGS takes no per-group options"
            )

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """None per parameter: torch's LBFGS keeps one flat state (see :meth:`shared_state_layout`)."""
        return []

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> list[StateTensor]:
        """Flat vectors over all parameters (complex ones as real pairs, dtypes promoted as ``torch.cat`` does):
        direction ``d`` and ``prev_flat_grad``; growing: up to ``history_size`` pairs (y, s) with their 0-dim
        ``ro`` and ``al`` (torch's ``al`` is ``history_size`` long), the 0-dim ``H_diag`` once a pair is kept
        and the step ``t`` (0-dim when the last iteration was the first, or with the line search)."""
        import torch

        params = [p for group in groups for p in group.params]
        if not params:
            return []
        numel, flat = 0, None
        for p in params:
            real = p.dtype.to_real() if p.dtype.is_complex else p.dtype
            numel += p.numel * (2 if p.dtype.is_complex else 1)
            flat = real if flat is None else torch.promote_types(flat, real)
        history = groups[0].options["history_size"]
        return [
            StateTensor("d", (numel,), flat),
            StateTensor("prev_flat_grad", (numel,), flat),
            StateTensor("old_dirs", (numel,), flat, grows=True, count=history),
            StateTensor("old_stps", (numel,), flat, grows=True, count=history),
            StateTensor("ro", (), flat, grows=True, count=history),
            StateTensor("al", (), flat, grows=True, count=history),
            StateTensor("H_diag", (), flat, grows=True),
            StateTensor("t", (), flat, grows=True),
        ]


@attrs.frozen(kw_only=True)
class NAdamSpec(TorchOptimizerSpec):
    """NAdam: Adam with Nesterov momentum and a momentum schedule (``torch.optim.NAdam``).

    Per step ``t``, with ``g`` the gradient (plus ``weight_decay * p``, or decoupled:
    ``p *= 1 - lr * weight_decay``)::

        mu_t  = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g^2
        denom = sqrt(v / (1 - beta2^t)) + eps
        p     <- p - lr * (1 - mu_t) / (1 - prod_{i<=t} mu_i) * g / denom
                   - lr * mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m / denom
    """

    TYPE: ClassVar[str] = "nadam"
    PAPER: ClassVar[str] = "Dozat 2016, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "NAdam"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(2e-3, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = _betas_field()
    eps: float = optreg.field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = optreg.field(0.0, ge=0, doc="L2 penalty (decoupled with decoupled_weight_decay).")
    momentum_decay: float = optreg.field(4e-3, ge=0, doc="psi of the momentum schedule mu_t.")
    decoupled_weight_decay: bool = optreg.field(
        False, doc="Decay the weights directly (p *= 1 - lr * weight_decay, NAdamW) instead of through the gradient."
    )
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Adam's two moments and torch's 0-dim step and mu_product scalars."""
        dtype = _scalar_dtype()
        return [scalar("step", dtype), scalar("mu_product", dtype), param.like("exp_avg"), param.like("exp_avg_sq")]


@attrs.frozen(kw_only=True)
class RAdamSpec(TorchOptimizerSpec):
    """RAdam: Adam whose adaptive step is switched on by a variance rectification term (``torch.optim.RAdam``).

    Per step ``t``, with ``g`` the gradient (plus ``weight_decay * p``, or decoupled)::

        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        p     <- p - lr * m_hat * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)   if rho_t > 5
        p     <- p - lr * m_hat                                             otherwise
        r_t   = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    """

    TYPE: ClassVar[str] = "radam"
    PAPER: ClassVar[str] = (
        "Liu et al. 2020, On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020, arXiv:1908.03265"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "RAdam"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(1e-3, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = _betas_field()
    eps: float = optreg.field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = optreg.field(0.0, ge=0, doc="L2 penalty (decoupled with decoupled_weight_decay).")
    decoupled_weight_decay: bool = optreg.field(
        False, doc="Decay the weights directly (p *= 1 - lr * weight_decay, RAdamW) instead of through the gradient."
    )
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Adam's two moments and torch's 0-dim step scalar."""
        return [scalar("step", _scalar_dtype()), param.like("exp_avg"), param.like("exp_avg_sq")]


@attrs.frozen(kw_only=True)
class RMSpropSpec(TorchOptimizerSpec):
    """RMSprop: steps divided by a running RMS of the gradients (``torch.optim.RMSprop``).

    Per step, with ``g`` the gradient (plus ``weight_decay * p``)::

        v   <- alpha * v + (1 - alpha) * g^2
        gm  <- alpha * gm + (1 - alpha) * g              (centered only)
        den = sqrt(v - gm^2) + eps   if centered else   sqrt(v) + eps
        buf <- momentum * buf + g / den                  (momentum > 0)
        p   <- p - lr * buf          (or p - lr * g / den without momentum)
    """

    TYPE: ClassVar[str] = "rmsprop"
    PAPER: ClassVar[str] = (
        "Tieleman & Hinton 2012, Lecture 6.5 - RMSProp, COURSERA: Neural Networks for Machine Learning; "
        "centered: Graves 2013, arXiv:1308.0850"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "RMSprop"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    lr: float = optreg.field(1e-2, ge=0, doc="Learning rate.")
    alpha: float = optreg.field(0.99, ge=0, le=1, doc="EMA factor of the squared gradients.")
    eps: float = optreg.field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = _l2_field()
    momentum: float = optreg.field(0.0, ge=0, lt=1, doc="Momentum factor (0: no momentum buffer).")
    centered: bool = optreg.field(False, doc="Divide by the estimated variance (v - gm^2) instead of v.")
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The squared-gradient EMA and torch's 0-dim step; momentum_buffer with momentum > 0; grad_avg if centered."""
        layout = [scalar("step", _scalar_dtype()), param.like("square_avg")]
        if options["momentum"] > 0:
            layout.append(param.like("momentum_buffer"))
        if options["centered"]:
            layout.append(param.like("grad_avg"))
        return layout


#: The largest finite float32 and its smallest normal positive number: the range of a float32 parameter's state.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38


@attrs.frozen(kw_only=True)
class RpropSpec(TorchOptimizerSpec):
    """Rprop: per-coordinate step sizes grown or shrunk by gradient sign agreement (``torch.optim.Rprop``).

    Per step, with ``g`` the gradient and ``g_prev`` the last one kept
    (step sizes start at ``lr``)::

        step <- clamp(step * etaplus,  step_min, step_max)    where g * g_prev > 0
        step <- clamp(step * etaminus, step_min, step_max)    where g * g_prev < 0  (and g <- 0 there)
        p    <- p - sign(g) * step
        g_prev <- g

    Full-batch method: with noisy minibatch gradients the sign flips shrink the steps.
    """

    TYPE: ClassVar[str] = "rprop"
    PAPER: ClassVar[str] = (
        "Riedmiller & Braun 1993, A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    TORCH_CLASS: ClassVar[str] = "Rprop"
    SHARDING_REFUSAL: ClassVar[str | None] = "its masked in-place update (index_put_) fails on DTensors (torch 2.13)"
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"capturable": CAPTURABLE, "differentiable": DIFFERENTIABLE}

    # The step sizes are a tensor like the parameter, filled with lr and multiplied by the etas: each must be a
    # finite float32 (torch refuses to fill or scale a float32 tensor with a value beyond its range).
    lr: float = optreg.field(1e-2, ge=0, le=FLOAT32_MAX, doc="Initial per-coordinate step size.")
    etas: tuple[float, float] = optreg.field(
        (0.5, 1.2), ge=FLOAT32_TINY, le=FLOAT32_MAX,
        doc="(etaminus, etaplus): step-size factors on a sign flip and on agreement.",
    )
    step_sizes: tuple[float, float] = optreg.field(
        (1e-6, 50.0), ge=0, le=FLOAT32_MAX, doc="(min, max) of the step sizes."
    )
    foreach: bool | None = _foreach_field()
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The previous gradient, the per-coordinate step sizes and torch's 0-dim step scalar."""
        return [scalar("step", _scalar_dtype()), param.like("prev"), param.like("step_size")]

    def __attrs_post_init__(self) -> None:
        minus, plus = self.etas
        if not minus < 1:
            raise optreg.FieldValueError("etas", f"etaminus must be < 1 (it shrinks the step), got {minus}", 0)
        if not plus > 1:
            raise optreg.FieldValueError("etas", f"etaplus must be > 1 (it grows the step), got {plus}", 1)
        if self.step_sizes[0] > self.step_sizes[1]:
            raise optreg.FieldValueError(
                "step_sizes", f"give (min, max) with min <= max, got {list(self.step_sizes)}"
            )


@attrs.frozen(kw_only=True)
class SparseAdamSpec(TorchOptimizerSpec):
    """SparseAdam: lazy Adam for sparse gradients (``torch.optim.SparseAdam``).

    **Sparse gradients only**: parameters are dense tensors whose gradients are sparse, as from
    ``nn.Embedding(..., sparse=True)``; a dense gradient is torch's ``RuntimeError`` at the step
    (use ``adam`` for those, or one optimizer per kind of parameter). Per step, on the rows ``i``
    present in the sparse gradient only::

        m[i] <- beta1 * m[i] + (1 - beta1) * g[i]
        v[i] <- beta2 * v[i] + (1 - beta2) * g[i]^2
        p[i] <- p[i] - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m[i] / (sqrt(v[i]) + eps)

    Rows without a gradient keep their moments (the lazy part). No weight decay.
    """

    TYPE: ClassVar[str] = "sparse_adam"
    PAPER: ClassVar[str] = (
        "Kingma & Ba 2015, Adam: A Method for Stochastic Optimization, arXiv:1412.6980 (lazy variant)"
    )
    TORCH_CLASS: ClassVar[str] = "SparseAdam"

    lr: float = optreg.field(1e-3, gt=0, doc="Learning rate (torch's SparseAdam refuses 0).")
    betas: tuple[float, float] = _betas_field()
    eps: float = optreg.field(1e-8, gt=0, doc="Added to the denominator.")
    maximize: bool = _maximize_field()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Adam's two moments, dense like the parameter (torch keeps the step as a Python int)."""
        return [param.like("exp_avg"), param.like("exp_avg_sq")]


#: The optimizer specs, in the order of torch.optim's names.
OPTIMIZER_SPECS: tuple[type[TorchOptimizerSpec], ...] = (
    AdadeltaSpec,
    AdafactorSpec,
    AdagradSpec,
    AdamaxSpec,
    ASGDSpec,
    LBFGSSpec,
    NAdamSpec,
    RAdamSpec,
    RMSpropSpec,
    RpropSpec,
    SparseAdamSpec,
)
