"""A whole spec file: :class:`RunSpec` (optimizer, scheduler, parallelism, and tables plugins read).

The core reads ``schema_version``, ``[optimizer]``, ``[scheduler]`` and ``[parallelism]``. Any other
top-level table (``[train]`` of the main job) belongs to the plugin that registered it through
``optreg_register_tables``; it is validated by that plugin's class and reached as an attribute
(``spec.train``). A table a spec leaves out reads as the registered class's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from optreg.builtins import ConstantSchedule, SingleProcess
from optreg.errors import SpecError
from optreg.specs import BuildContext, FieldValueError, OptimizerSpec, ParallelismSpec, SchedulerSpec, field

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optreg.memory import StateEstimate
    from optreg.parallel import ParallelismStrategy

__all__ = ["Built", "RunSpec"]


def _check_schema_version(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value != RunSpec.SCHEMA_VERSION:
        raise FieldValueError(
            attribute.name, f"unsupported schema_version {value}; this optreg reads version {RunSpec.SCHEMA_VERSION}"
        )


@attrs.frozen(kw_only=True)
class Built:
    """What :meth:`RunSpec.build` returns."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    strategy: ParallelismStrategy
    model: Any


@attrs.frozen(kw_only=True)
class RunSpec:
    """A whole spec file: optimizer, scheduler, parallelism, and the tables of plugins (``spec.train``)."""

    SCHEMA_VERSION: ClassVar[int] = 1
    #: The keys the core itself reads; every other top-level table belongs to a plugin.
    CORE_KEYS: ClassVar[tuple[str, ...]] = ("schema_version", "optimizer", "scheduler", "parallelism")

    schema_version: int = field(1, validator=_check_schema_version, doc="Spec format version.")
    optimizer: OptimizerSpec = field(doc="The optimizer table.")
    scheduler: SchedulerSpec = attrs.field(
        factory=ConstantSchedule, metadata={"doc": "The LR schedule table.", "bounds": {}}
    )
    parallelism: ParallelismSpec = attrs.field(
        factory=SingleProcess, metadata={"doc": "The parallelism table.", "bounds": {}}
    )
    #: Plugin tables the file holds: name -> the registered class's instance.
    tables: Mapping[str, Any] = attrs.field(factory=dict, hash=False, metadata={"internal": True})
    #: Every table the registry that parsed the file knows: name -> class (for defaults of absent tables).
    table_classes: Mapping[str, type] = attrs.field(
        factory=dict, eq=False, hash=False, repr=False, metadata={"internal": True}
    )
    source: str | None = attrs.field(default=None, eq=False, repr=False, metadata={"internal": True})

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a plugin's table by name (``spec.train``).
        if name.startswith("_") or name in ("tables", "table_classes"):
            raise AttributeError(name)
        tables = self.tables
        if name in tables:
            return tables[name]
        if name in self.table_classes:
            return self.table_classes[name]()
        raise AttributeError(
            f"this spec has no [{name}] table, and no installed plugin registers one "
            f"(tables: {', '.join(sorted({*tables, *self.table_classes})) or 'none'})"
        )

    def with_table(self, name: str, value: Any) -> RunSpec:
        """A copy with the plugin table ``name`` replaced by ``value``."""
        return attrs.evolve(self, tables={**self.tables, name: value})

    def run_length(self, units: str, data_parallel_size: int = 1) -> int | None:
        """The run's length in ``units`` (steps or tokens), from the first plugin table that knows it; tokens
        count every one of ``data_parallel_size`` ranks'."""
        for name in sorted({*self.tables, *self.table_classes}):
            table = getattr(self, name)
            length = getattr(table, "run_length", None)
            if callable(length):
                value = length(units, data_parallel_size)
                if value is not None:
                    return value
        return None

    def build(self, model: nn.Module, *, t_max: int | None = None) -> Built:
        """Apply the parallelism strategy, then build the optimizer and the scheduler.

        ``t_max`` defaults to the scheduler's own ``t_max``, then the run length a plugin table
        gives in the scheduler's units (``[train] steps``, or its token budget over every data-parallel
        rank). Errors in the optimizer's and scheduler's options carry ``$.optimizer...`` /
        ``$.scheduler...`` paths and the file.
        """
        try:
            strategy = self.parallelism.create()
            model = strategy.apply(model)
        except SpecError as exc:  # e.g. a distributed strategy outside a launch: the error says how to launch
            raise exc.in_table("parallelism", self.source) from None
        context = BuildContext(model=model, device_mesh=getattr(strategy, "device_mesh", None), strategy=strategy)
        try:
            optimizer = self.optimizer.build(model, context=context)
        except SpecError as exc:
            raise exc.in_table("optimizer", self.source) from None
        if t_max is None:
            t_max = self.scheduler.t_max or self.run_length(self.scheduler.units, strategy.data_parallel_size)
        try:
            scheduler = self.scheduler.build(optimizer, t_max=t_max)
        except SpecError as exc:
            raise exc.in_table("scheduler", self.source) from None
        return Built(optimizer=optimizer, scheduler=scheduler, strategy=strategy, model=model)

    def estimate_state(self, model: nn.Module, *, world_size: int = 1) -> StateEstimate:
        """The optimizer state this run allocates on each rank, from the model's shapes, before anything is
        allocated: the optimizer's declared layout over the parameters as ``[parallelism]`` shards them
        over ``world_size`` ranks (rank 0's shard, the largest). Already sharded parameters (DTensors)
        count their local shard as they are."""
        from optreg.memory import estimate_state

        if isinstance(self.parallelism, SingleProcess):
            world_size = 1  # one process whatever the number asked
        try:
            shapes = self.parallelism.local_shapes(model, world_size) if world_size > 1 else {}
        except SpecError as exc:
            raise exc.in_table("parallelism", self.source) from None
        shard = (lambda fqn, shape: shapes.get(fqn, shape)) if shapes else None
        try:
            return estimate_state(self.optimizer, model, shard=shard, world_size=world_size, sharded=bool(shapes))
        except SpecError as exc:
            raise exc.in_table("optimizer", self.source) from None

    def build_in_process(self, model: nn.Module, *, t_max: int | None = None) -> Built:
        """Build the optimizer and the schedule on ``model`` in this process, leaving the parallelism strategy
        out (a distributed spec is checked without launching it).

        What ``optreg validate``, ``groups`` and ``lr`` do: every error a run would give before it needs data
        (a glob that matches no parameter, an option that does not fit a parameter's shape, a warmup longer
        than the run) is a :class:`SpecError` with the file and the field's path.
        """
        from optreg.builtins import SingleProcess

        context = BuildContext(model=model)
        try:
            optimizer = self.optimizer.build(model, context=context)
        except SpecError as exc:
            raise exc.in_table("optimizer", self.source) from None
        except (ValueError, TypeError) as exc:  # an optimizer's own check of its options against the model
            raise SpecError(
                f"the optimizer does not build on this model: {exc}", path="$.optimizer", file=self.source
            ) from None
        if t_max is None:
            t_max = self.scheduler.t_max or self.run_length(self.scheduler.units)
        try:
            scheduler = self.scheduler.build(optimizer, t_max=t_max)
        except SpecError as exc:
            raise exc.in_table("scheduler", self.source) from None
        return Built(optimizer=optimizer, scheduler=scheduler, strategy=SingleProcess().create(), model=model)
