"""Spec base classes: frozen attrs classes that describe what to build.

A plugin subclasses :class:`OptimizerSpec`, :class:`SchedulerSpec` or
:class:`ParallelismSpec`, gives it a ``TYPE`` (the name used in TOML as
``type = "..."``) and declares its options with :func:`field`. Specs never hold
import strings: names resolve only through the :class:`optreg.Registry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optreg.memory import GroupShape, ParamShape, StateEntry, StateTensor
    from optreg.parallel import ParallelismStrategy

__all__ = [
    "COMPILE_DOC",
    "STEP_INPUTS",
    "StepInput",
    "BuildContext",
    "FieldTypeError",
    "FieldValueError",
    "FieldValueErrors",
    "GroupOverride",
    "MAX_COUNT",
    "MAX_STEPS",
    "OptimizerSpec",
    "ParallelismSpec",
    "ROLES",
    "SchedulerSpec",
    "Spec",
    "WrapperSpec",
    "describe_bounds",
    "field",
    "spec_fields",
]

#: Upper bound of options that count steps or tokens (``t_max``, warmups, decay lengths, periods,
#: intervals): about 1.1e15, more tokens than any run trains on, yet far from 2**53 where a float
#: step counter stops counting (and far from what a loop or a window sized by it could survive).
MAX_STEPS = 2**50
#: Upper bound of options that size an allocation or a loop per step (history windows, ranks, head
#: counts, iterations per step): about a million, far beyond any useful setting, small enough that a
#: window of this many float64 values takes 8 MB instead of exhausting memory.
MAX_COUNT = 2**20

#: The doc of every optimizer's ``compile`` option: one policy for every family (``optreg.compiling.use_compile``).
COMPILE_DOC = (
    "Run the step through torch.compile (fused kernels; the first step compiles for seconds). `auto`: for a "
    "param group whose parameters hold 2**23 (8.4 M) elements or more and a compiler is available, so small models "
    "and tests stay eager; `true`: always; `false`: never."
)

#: The roles a parameter can have; see :mod:`optreg.groups`.
ROLES = ("embedding", "head", "matrix", "vector")
Role = Literal["embedding", "head", "matrix", "vector"]
#: What ``no_decay`` may list: a role, or the ``bias`` / ``norm`` tags.
NoDecayCategory = Literal["bias", "norm", "embedding", "head", "vector", "matrix"]


class FieldValueError(ValueError):
    """A validator rejected a field; ``field`` is its name, ``index`` an optional element index.

    ``message`` says what is wrong; ``str()`` names the field too (``lr: must be >= 0, got -1.0``), so an
    error raised while building a spec in Python says which option it is about.
    """

    def __init__(self, field: str, message: str, index: int | str | None = None) -> None:
        self.field = field
        self.index = index
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        where = self.field + (f"[{self.index}]" if isinstance(self.index, int) else "")
        if isinstance(self.index, str):
            where += f"[{self.index!r}]"
        return f"{where}: {self.message}"

    def __reduce__(self):  # keep pickling working with the extra constructor arguments
        return (type(self), (self.field, self.message, self.index))


class FieldTypeError(FieldValueError, TypeError):
    """A field got a value of the wrong type (``AdamWSpec(lr="1e-3")``): a ``TypeError`` and a ``FieldValueError``."""


class FieldValueErrors(ValueError):
    """Several field problems at once (a cross-field check that finds more than one): each is reported."""

    def __init__(self, errors: list[FieldValueError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def describe_bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """``>= 0``, ``in [0, 1)``...: how a bound reads in every message (specs and constructors alike)."""
    return _describe_bound(ge, gt, le, lt)


def _describe_bound(ge, gt, le, lt) -> str:
    lower = f">= {ge}" if ge is not None else (f"> {gt}" if gt is not None else "")
    upper = f"<= {le}" if le is not None else (f"< {lt}" if lt is not None else "")
    if lower and upper:
        lo = "[" if ge is not None else "("
        hi = "]" if le is not None else ")"
        return f"in {lo}{ge if ge is not None else gt}, {le if le is not None else lt}{hi}"
    return lower or upper


def _bounds_validator(ge, gt, le, lt) -> Callable[[Any, attrs.Attribute, Any], None]:
    description = _describe_bound(ge, gt, le, lt)

    def check_one(name: str, value: Any, index: int | None) -> None:
        if value is None or isinstance(value, (bool, str)):
            return
        if not isinstance(value, (int, float)):
            return
        ok = (
            (ge is None or value >= ge)
            and (gt is None or value > gt)
            and (le is None or value <= le)
            and (lt is None or value < lt)
        )
        if not ok:
            raise FieldValueError(name, f"must be {description}, got {value!r}", index)

    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, (tuple, list)):
            check_one(attribute.name, value, None)
            return
        problems = []  # every element out of range is reported, not only the first
        for i, item in enumerate(value):
            for inner in item if isinstance(item, (tuple, list)) else (item,):
                try:
                    check_one(attribute.name, inner, i)
                except FieldValueError as exc:
                    problems.append(exc)
                    break
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise FieldValueErrors(problems)

    return validate


def field(
    default: Any = attrs.NOTHING,
    *,
    doc: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    validator: Callable[[Any, attrs.Attribute, Any], None] | None = None,
    factory: Callable[[], Any] | None = None,
    per_group: bool = True,
    kwarg: bool = True,
    unbounded: bool = False,
) -> Any:
    """Declare a spec option.

    ``ge``/``gt``/``le``/``lt`` bound a number (element-wise for tuples such as
    ``betas``) and appear in ``optreg show`` and the JSON Schema. ``per_group``
    says whether ``[[optimizer.group_overrides]]`` may override the option;
    ``kwarg = False`` keeps it out of :meth:`OptimizerSpec.optimizer_kwargs`.
    ``unbounded = True`` declares an integer that sizes nothing (an ID, a bit pattern), so the kit's
    huge-sizes check does not ask it for an upper bound (seeds are recognized by name).
    """
    validators = []
    if any(b is not None for b in (ge, gt, le, lt)):
        validators.append(_bounds_validator(ge, gt, le, lt))
    if validator is not None:
        validators.append(validator)
    metadata = {
        "doc": doc,
        "bounds": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None},
        "per_group": per_group,
        "kwarg": kwarg,
    }
    if unbounded:
        metadata["unbounded"] = True
    if factory is not None:
        return attrs.field(factory=factory, validator=validators or None, metadata=metadata)
    return attrs.field(default=default, validator=validators or None, metadata=metadata)


def spec_fields(cls: type) -> tuple[attrs.Attribute, ...]:
    """The user-facing fields of a spec class (internal bookkeeping fields excluded)."""
    return tuple(f for f in attrs.fields(cls) if not f.metadata.get("internal"))


class _SpecMeta(type):
    """Checks the type of every option a spec class is called with, before its validators run.

    TOML goes through the strict converter; this gives specs built in Python
    (``AdamWSpec(lr="1e-3")``, ``attrs.evolve(spec, ...)``) the same rules: a :class:`FieldTypeError`
    naming the field instead of a failure at the first step. Lists given for tuple fields become tuples.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            from optreg.typecheck import check_options

            kwargs = check_options(cls, kwargs)
        return super().__call__(*args, **kwargs)


@attrs.frozen(kw_only=True)
class Spec(metaclass=_SpecMeta):
    """Common base of every registered spec class.

    Class attributes a plugin sets: ``TYPE`` (lower snake case, required),
    ``ALIASES`` (other accepted names), ``PAPER`` (the reference, shown by
    ``optreg show`` and the docs).
    """

    KIND: ClassVar[str] = ""
    TYPE: ClassVar[str]
    ALIASES: ClassVar[tuple[str, ...]] = ()
    PAPER: ClassVar[str] = ""

    #: The distribution a qualified type named (``type = "optreg-adam:adamw"``), kept so the spec dumps
    #: the same way; ``None`` for a plain name. Not an option: not compared, not shown.
    qualifier: str | None = attrs.field(default=None, eq=False, repr=False, metadata={"internal": True})


@attrs.frozen(kw_only=True)
class GroupOverride:
    """One ``[[optimizer.group_overrides]]`` entry: globs over parameter FQNs plus options.

    ``options`` has already been validated against the optimizer spec's own
    fields. ``strict = false`` allows globs that match nothing.
    """

    params: tuple[str, ...]
    strict: bool = True
    options: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


#: What an optimizer's ``step`` needs from the training loop (``OptimizerSpec.STEP_INPUT``):
#:
#: - ``"gradients"``: the loop runs forward and backward, then ``step()`` (``step(closure)`` may
#:   return the known loss); most optimizers.
#: - ``"closure"``: ``step(closure)`` where the closure zeroes the gradients, computes the loss, runs
#:   its backward and returns the loss; the optimizer calls it (once or more: SAM's two passes, L-BFGS'
#:   line search, Sophia's Hessian probes) and no backward runs before the step.
#: - ``"per_sample"``: ``step(closure)`` where the closure sets each parameter's ``grad_sample`` (one
#:   gradient per example, ``[batch, *shape]``) and returns the batch's loss: see
#:   :func:`optreg.optim.per_sample_grads` (DP-SGD).
STEP_INPUTS: tuple[str, ...] = ("gradients", "closure", "per_sample")
StepInput = Literal["gradients", "closure", "per_sample"]


@attrs.frozen
class BuildContext:
    """What a spec may need besides its param groups when it builds an optimizer."""

    model: nn.Module | None = None
    device_mesh: Any = None
    strategy: ParallelismStrategy | None = None


@attrs.frozen(kw_only=True)
class OptimizerSpec(Spec):
    """Base of optimizer specs.

    A subclass sets ``optimizer_class`` (a ``torch.optim.Optimizer`` subclass
    whose constructor takes the spec's options as keyword arguments) or
    overrides :meth:`create`. ``CAPABILITIES`` lists optional behaviours the
    optimizer supports, e.g. ``"step_factor"`` (0/1 tensor gating a step without
    a host sync) or ``"foreach"`` (per-tensor and multi-tensor paths). ``STEP_INPUT``
    says what ``step`` needs from a training loop (see :data:`STEP_INPUTS`).
    """

    KIND: ClassVar[str] = "optimizer"
    optimizer_class: ClassVar[type | None] = None
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    STEP_INPUT: ClassVar[StepInput] = "gradients"

    group_overrides: tuple[GroupOverride, ...] = field(
        (),
        doc="Per-parameter-group options: each entry has `params` (globs over FQNs) "
        "and the options to override.",
        per_group=False,
        kwarg=False,
    )
    no_decay: tuple[NoDecayCategory, ...] = field(
        ("bias", "norm", "embedding"),
        doc="Parameters that get no weight decay: roles and/or the tags `bias`, `norm`.",
        per_group=False,
        kwarg=False,
    )
    roles: Mapping[Role, tuple[str, ...]] = attrs.field(
        factory=dict,
        hash=False,
        metadata={
            "doc": "Explicit role assignment: role -> globs over FQNs (wins over detection).",
            "bounds": {},
            "per_group": False,
            "kwarg": False,
        },
    )

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``optimizer_class`` (fields marked ``kwarg=False`` left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in spec_fields(type(self))
            if f.metadata.get("kwarg", True)
        }

    def group_option_spec(self) -> OptimizerSpec:
        """The spec whose fields ``group_overrides`` options refer to (wrappers return ``inner``)."""
        return self

    def capabilities(self) -> frozenset[str]:
        """What this configuration supports: ``CAPABILITIES``, or less (a wrapper: what its inner supports)."""
        return frozenset(type(self).CAPABILITIES)

    def step_input(self) -> StepInput:
        """What ``step`` needs from a training loop (:data:`STEP_INPUTS`): this class's ``STEP_INPUT``, or,
        for a wrapper that only gates or rescales its inner optimizer, its inner's."""
        return type(self).STEP_INPUT

    def role_options(self, role: str) -> dict[str, Any] | None:
        """Extra param-group options for parameters of ``role``.

        ``None`` (the default) means the optimizer does not route by role. A
        matrix-aware optimizer returns e.g. ``{"algorithm": "muon"}`` for
        ``matrix`` and ``{"algorithm": "adamw", "lr": ...}`` otherwise; groups are
        then split by role.
        """
        return None

    # -- the state layout: what the optimizer allocates, declared once (see optreg.memory)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The state tensors this optimizer keeps for one parameter, under its group's ``options`` (the spec's
        options overlaid with the group's): e.g. ``[param.like("exp_avg"), param.like("exp_avg_sq"),
        scalar("step")]``. What ``optreg validate --model`` reports and ``optreg train`` checks against
        the available memory; the conformance kit checks it against the state after a step.

        Override it (and :meth:`group_state_layout` / :meth:`shared_state_layout` for state kept once
        per group or per optimizer). The default says the layout is not declared.
        """
        from optreg.memory import StateLayoutNotDeclared

        raise StateLayoutNotDeclared(f"{type(self).__name__} declares no state layout (param_state_layout)")

    def group_state_layout(self, group: GroupShape) -> Sequence[StateTensor]:
        """State tensors kept once per param group (a schedule-free weight sum kept as a tensor); none by default."""
        return ()

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> Sequence[StateTensor]:
        """State tensors kept once per optimizer (L-BFGS' flat history, a skip-step statistics window); none by
        default."""
        return ()

    def own_state_layout(self, groups: Sequence[GroupShape]) -> list[StateEntry]:
        """This spec's own state for ``groups`` (a wrapper's inner optimizers declare theirs), as entries."""
        from optreg.memory import StateEntry

        entries = [
            StateEntry(self.TYPE, group.name, param.fqn, tensor)
            for group in groups
            for param in group.params
            for tensor in self.param_state_layout(param, group.options)
        ]
        entries += [
            StateEntry(self.TYPE, group.name, None, tensor)
            for group in groups
            for tensor in self.group_state_layout(group)
        ]
        entries += [StateEntry(self.TYPE, "(optimizer)", None, t) for t in self.shared_state_layout(groups)]
        return entries

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        """Instantiate the optimizer over ready-made param groups."""
        if self.optimizer_class is None:
            raise TypeError(f"{type(self).__name__} sets no optimizer_class and does not override create()")
        return self.optimizer_class(param_groups, **self.optimizer_kwargs())

    def build(self, model_or_params: Any, *, context: BuildContext | None = None) -> torch.optim.Optimizer:
        """Build the optimizer for an ``nn.Module`` or an iterable of tensors / param-group dicts."""
        from optreg.groups import build_param_groups

        context = context or BuildContext()
        groups = build_param_groups(self, model_or_params)
        if isinstance(model_or_params, _module_type()) and context.model is None:
            context = attrs.evolve(context, model=model_or_params)
        try:
            return self.create(groups, context)
        except (FieldValueError, FieldValueErrors) as exc:  # an option that does not fit the model's parameters
            raise self.option_error(exc) from None

    def option_error(self, exc: FieldValueError | FieldValueErrors) -> Exception:
        """A :class:`~optreg.SpecError` at the path of the option an optimizer rejected while it was built
        (``$.split_sizes``, or ``$.group_overrides[0].split_sizes`` when only an override sets it)."""
        from optreg.errors import SpecError, format_path

        problems = exc.errors if isinstance(exc, FieldValueErrors) else [exc]
        errors = []
        for problem in problems:
            index = (problem.index,) if problem.index is not None else ()
            errors.append((format_path((*self.option_path(problem.field), *index)), problem.message))
        return SpecError(errors[0][1], path=errors[0][0], errors=errors)

    def option_path(self, name: str) -> tuple[str | int, ...]:
        """Where option ``name`` is set in this table: through ``inner`` for a wrapper's optimizer, or the
        first group override that sets it when the table itself keeps the default."""
        target: OptimizerSpec = self
        prefix: tuple[str | int, ...] = ()
        common = {f.name for f in spec_fields(OptimizerSpec)}
        while isinstance(target, WrapperSpec) and name not in {f.name for f in spec_fields(type(target))} - common:
            prefix += ("inner",)
            target = target.inner
        fields = {f.name: f for f in spec_fields(type(target))}
        if name not in fields:
            return (*prefix, name)
        f = fields[name]
        default = f.default
        if isinstance(default, attrs.Factory) and not default.takes_self:  # type: ignore[arg-type]
            default = default.factory()
        setters = [i for i, o in enumerate(self.group_overrides) if name in o.options]
        if setters and getattr(target, name) == default:
            return ("group_overrides", setters[0], name)
        return (*prefix, name)


def _module_type() -> type:
    from torch import nn

    return nn.Module


@attrs.frozen(kw_only=True)
class WrapperSpec(OptimizerSpec):
    """Base of specs that wrap any registered optimizer (``inner``): skip-step, Mechanic, schedule-free.

    TOML gives ``inner`` as an ``[optimizer.inner]`` table with its own ``type``. Group overrides and
    role routing refer to the innermost optimizer's options; ``CAPABILITIES`` lists what the wrapper
    keeps of its inner optimizer's (``capabilities()`` is their intersection). Implement :meth:`wrap`.
    """

    inner: OptimizerSpec = field(doc="The wrapped optimizer (a table with its own `type`).", per_group=False)

    def group_option_spec(self) -> OptimizerSpec:
        return self.inner.group_option_spec()

    def role_options(self, role: str) -> dict[str, Any] | None:
        return self.inner.role_options(role)

    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities() & frozenset(type(self).CAPABILITIES)

    def step_input(self) -> StepInput:
        """The wrapper's own ``STEP_INPUT`` when it sets one (SAM needs a closure around any optimizer), else its
        inner optimizer's."""
        own = type(self).STEP_INPUT
        return own if own != "gradients" else self.inner.step_input()

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The wrapper's own state per parameter, besides its inner optimizer's (which ``inner`` declares):
        none by default; a wrapper that keeps some overrides this."""
        return ()

    def inner_groups(self, groups: Sequence[GroupShape]) -> Sequence[GroupShape]:
        """The param groups as the inner optimizer's state sees them: unchanged by default; a wrapper that steps
        its inner optimizer on other tensors (GaLore: low-rank projections) returns their shapes."""
        return groups

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        return self.wrap(self.inner.create(param_groups, context), context)

    def wrap(self, inner: torch.optim.Optimizer, context: BuildContext) -> torch.optim.Optimizer:
        """The wrapper optimizer around the already built ``inner`` one."""
        raise NotImplementedError(f"{type(self).__name__} must implement wrap()")


@attrs.frozen(kw_only=True)
class SchedulerSpec(Spec):
    """Base of LR schedule specs: a stateless ``get_lr(initial_lr, current, t_max)``.

    ``current`` counts steps or tokens (``units``); ``t_max`` comes from the spec
    or, when absent there, from the run (``build_scheduler(..., t_max=...)``).
    """

    KIND: ClassVar[str] = "scheduler"

    units: Literal["steps", "tokens"] = field("steps", doc="What `current` and `t_max` count.")
    t_max: int | None = field(
        None, ge=1, le=MAX_STEPS, doc="Length of the schedule; defaults to the run length."
    )

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        """The LR at ``current`` for a group whose initial LR is ``initial_lr``.

        The spec's own ``t_max`` wins over the one passed (as the built ``ScheduledLR`` does), a
        ``current`` before the start (< 0) gives the LR at 0 (no schedule extrapolates its warmup to
        negative LRs), a non-finite ``current`` is a ``ValueError``; then :meth:`compute_lr`. A schedule
        implements :meth:`compute_lr` (or overrides this method whole).
        """
        if not math.isfinite(current):
            raise ValueError(f"current must be a finite count of {self.units}, got {current!r}")
        return self.compute_lr(initial_lr, max(current, 0), self.t_max if self.t_max is not None else t_max)

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        """The schedule's formula, for ``current >= 0`` and ``t_max`` already resolved (None: unknown)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_lr (or get_lr)")

    def needs_t_max(self) -> bool:
        """Whether this configuration needs the run length (a cosine decay does; a constant, or a
        schedule whose counts are all absolute, does not). Building it without one is a SpecError."""
        return False

    def build(self, optimizer: torch.optim.Optimizer, *, t_max: int | None = None):
        """Wrap this schedule as a ``torch.optim.lr_scheduler.LRScheduler``."""
        from optreg.scheduling import ScheduledLR

        return ScheduledLR(optimizer, self, t_max=t_max)


@attrs.frozen(kw_only=True)
class ParallelismSpec(Spec):
    """Base of parallelism specs; :meth:`create` returns a :class:`~optreg.parallel.ParallelismStrategy`."""

    KIND: ClassVar[str] = "parallelism"

    def local_shapes(self, model: nn.Module, world_size: int) -> dict[str, tuple[int, ...]]:
        """Rank 0's shard shape of every parameter this strategy shards over ``world_size`` ranks (FQN ->
        shape; a parameter left out is whole on every rank): how the optimizer-state estimate of
        ``optreg validate --world-size`` counts state per rank before any process is launched. Rank 0
        holds the largest shard (``torch.chunk``). The default shards nothing."""
        return {}

    def create(self) -> ParallelismStrategy:
        raise NotImplementedError(f"{type(self).__name__} must implement create")
