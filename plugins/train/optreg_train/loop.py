"""The training loop of ``optreg train``: one run of a spec on a built-in task.

What a run writes in its directory:

- ``spec.toml``: the resolved spec (defaults filled in, command-line overrides
  applied); ``optreg train --resume DIR`` reads it back.
- ``metrics.jsonl``: one JSON object per step (``step``, ``loss``, ``lr`` (of
  the param group with the most parameters), ``tokens``, ``time``; ``val_loss``
  on evaluation steps; ``skipped`` for skip-step optimizers; ``lrs``, every
  group's LR, when they differ).
- ``checkpoint.pt`` (``checkpoint/``, torch.distributed.checkpoint shards, in a distributed run): model,
  optimizer, scheduler and RNG state (loads with
  ``torch.load(weights_only=True)``), written at every evaluation, at the end and
  on Ctrl-C.
- ``summary.json``, ``loss.png``, ``lr.png``.

Optimizers with ``.eval()`` / ``.train()`` methods (schedule-free) are switched to
their evaluation parameters for every evaluation and checkpoint. Optimizers that
expose a 0-dim ``step_skipped`` tensor (skip-step) have their skipped steps counted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import optreg
from optreg.errors import SpecError
from optreg.optim import give_loss, reduced
from optreg.parallel import ParallelismStrategy, initialize_state
from optreg.runspec import RunSpec
from optreg.scheduling import ScheduledLR
from optreg_train.checkpoint import (
    CHECKPOINT,
    DISTRIBUTED_CHECKPOINT,
    load_run_state,
    newest_checkpoint,
    save_run_state,
)
from optreg_train.effective import effective_lrs
from optreg_train.extension import ExtendedSchedule, Extension, describe_extension
from optreg_train.metrics import PeakMemory, json_number, mean_last, optimizer_state_bytes, read_metrics
from optreg_train.results import TRAIN_LOSS_WINDOW, RunResult, Status
from optreg_train.specs import FLOAT16_ON_CPU
from optreg_train.tasks import Task, load_task

__all__ = ["RunDirError", "RunResult", "make_progress", "preflight", "prepare_run", "resolve_device", "train_run"]



class RunDirError(ValueError):
    """The output directory cannot be used as asked (already holds a run, or holds none to resume)."""




#: Devices where ``autocast = "float16"`` runs (with a GradScaler); elsewhere it is a spec error.
FLOAT16_DEVICES: tuple[str, ...] = ("cuda",)


def resolve_device(name: str, file: str | None = None) -> torch.device:
    """The device of ``[train] device`` (``auto``: CUDA when available); a SpecError naming ``file`` if absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' asked for, but CUDA is not available here (use \"auto\" or \"cpu\")",
                        path="$.train.device", file=file)
    return torch.device(name)


def _autocast(spec: RunSpec, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward passes' ``torch.autocast`` of ``[train] autocast`` (nothing without it)."""
    dtype = spec.train.autocast
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def make_progress(console: Console | None = None) -> Progress:
    """The live progress display: step, loss, LR, validation loss, throughput, time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("loss [cyan]{task.fields[loss]}"),
        TextColumn("val [magenta]{task.fields[val]}"),
        TextColumn("lr {task.fields[lr]}"),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )


def _has_mode_switch(optimizer: Any) -> bool:
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


@contextlib.contextmanager
def _eval_params(optimizer: Any, model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode: schedule-free optimizers swap in their averaged parameters."""
    switch = _has_mode_switch(optimizer)
    if switch:
        optimizer.eval()
    model.eval()
    try:
        yield
    finally:
        model.train()
        if switch:
            optimizer.train()


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop after the current step (the second one aborts).

    In a distributed run every SIGINT and SIGTERM is such a request, the later ones too: a Ctrl-C reaches
    each rank from the terminal and again from torchrun's agent, which passes it on to its workers (and
    kills them if they have not stopped within its shutdown timeout). The ranks agree on the step they
    stop after (:meth:`agreed`).
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT,), *, repeat: bool = False) -> None:
        self.requested = False
        self.signals = signals
        self.repeat = repeat

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        # Off the main thread signals cannot be handled; an ignored SIGINT (nohup, a background
        # job) stays ignored, as Python itself leaves it.
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        wanted = [s for s in self.signals if signal.getsignal(s) is not signal.SIG_IGN]
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            self.requested = True
            if not self.repeat:
                signal.signal(signum, previous[signum])  # a second one interrupts at once

        for signum in wanted:
            previous[signum] = signal.signal(signum, handler)
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def agreed(self, strategy: Any) -> bool:
        """Whether any rank was asked to stop (every rank then stops after the same step)."""
        if not strategy.is_distributed:
            return self.requested
        import torch.distributed as dist

        flag = torch.tensor(1.0 if self.requested else 0.0)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(group["lr"]) for group in optimizer.param_groups]


def _skipped_flag(optimizer: Any) -> torch.Tensor | None:
    flag = getattr(optimizer, "step_skipped", None)
    return flag if isinstance(flag, torch.Tensor) else None


@attrs.define
class PreparedRun:
    """Everything built before the first step: task, model, optimizer, scheduler."""

    spec: RunSpec
    task: Task
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data_gen: torch.Generator
    strategy: Any = None
    #: ``torch.amp.GradScaler`` of ``autocast = "float16"`` (None otherwise).
    scaler: Any = None


def prepare_run(spec: RunSpec, task: Task | None = None) -> PreparedRun:
    """Load the task and build model, optimizer and scheduler (SpecErrors surface here, before training)."""
    train = spec.train
    _check_step_input(spec)
    device = resolve_device(train.device, spec.source)
    if train.autocast == "float16" and device.type not in FLOAT16_DEVICES:
        raise SpecError(FLOAT16_ON_CPU, path="$.train.autocast", file=spec.source)
    task = task or load_task(train, file=spec.source)
    torch.manual_seed(train.seed)
    model = task.make_model().to(device)
    _check_launch(spec)
    built = spec.build(model)  # the schedule spans [train]'s run length (in tokens: the global batch's)
    device = getattr(built.strategy, "device", None) or device
    if train.memory_check:
        check_memory(spec, built.model, device)
    if _has_mode_switch(built.optimizer):
        built.optimizer.train()
    data_gen = torch.Generator().manual_seed(train.seed)
    scaler = torch.amp.GradScaler(device.type) if train.autocast == "float16" else None
    return PreparedRun(spec, task, device, built.model, built.optimizer, built.scheduler, data_gen, built.strategy,
                       scaler)


def check_memory(spec: RunSpec, model: torch.nn.Module, device: torch.device) -> None:
    """Refuse, before anything of the optimizer is allocated, a run whose optimizer state (the optimizer's
    declared layout over this rank's parameter shards) and gradients would not fit in the memory available on
    ``device`` (on the CPU, times the ranks a launch runs on this machine, which share it); the error gives the
    estimate (``[train] memory_check = false`` turns the check off)."""
    from optreg.memory import available_memory, format_bytes, local_shard

    estimate = spec.estimate_state(model)
    grads = sum(
        local_shard(p).numel() * p.element_size() for p in model.parameters() if p.requires_grad and p.grad is None
    )
    free = available_memory(device)
    # the ranks of a launch on this machine share its CPU memory (each GPU has its own)
    sharing = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device.type == "cpu" else 1
    need = (estimate.total_bytes + grads) * sharing
    if free is None or need <= free:
        return
    detail = "; ".join(line.strip() for line in estimate.lines())
    ranks = f" for the {sharing} ranks on this machine" if sharing > 1 else ""
    raise SpecError(
        f"this run needs {format_bytes(need)} more on {device}{ranks} ({format_bytes(estimate.total_bytes)} of "
        f"optimizer state and {format_bytes(grads)} of gradients per rank), but {format_bytes(free)} is "
        f"available: {detail}. Shard "
        "it over more ranks ([parallelism]), keep the state in bfloat16 where the optimizer offers it, train a "
        "smaller model, or set memory_check = false to try anyway",
        path="$.train.memory_check", file=spec.source,
    )


def _check_launch(spec: RunSpec) -> None:
    """Several processes need a distributed strategy: each would otherwise train its own copy into one directory."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and spec.parallelism.TYPE == "single":
        raise SpecError(
            f"{world} processes were launched, but the spec's parallelism is 'single': set [parallelism] type to "
            "a distributed strategy (ddp, fsdp, hsdp, tp, fsdp_tp: optreg-parallel), or launch one process",
            path="$.parallelism.type",
            file=spec.source,
        )


def preflight(spec: RunSpec, task: Task | None = None) -> None:
    """Build the run and take one step on a throwaway copy.

    Some problems only show when the optimizer steps (an option that does not fit a
    parameter's shape); they stop the run here, as a :class:`SpecError`, before
    anything is written or trained. The real run is built afresh afterwards, so this
    changes none of its numbers.
    """
    try:
        run = prepare_run(spec, task)
    except SpecError:
        raise
    except (ValueError, TypeError) as exc:  # an optimizer's own check of its options against the model
        raise SpecError(f"the spec does not build: {exc}", path="$", file=spec.source) from None
    gen = torch.Generator().manual_seed(spec.train.seed + 1)
    try:
        _train_step(run, gen)
        if spec.scheduler.units == "tokens":
            run.scheduler.step(tokens=_global_tokens_per_step(run))
        else:
            run.scheduler.step()
        with torch.no_grad(), _eval_params(run.optimizer, run.model):
            pass
    except SpecError:
        raise
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError) as exc:
        raise SpecError(
            f"the spec builds, but its first training step fails: {type(exc).__name__}: {exc}",
            path="$",
            file=spec.source,
        ) from None


def _check_step_input(spec: RunSpec) -> None:
    """Refuse, before anything is built, [train] options the optimizer's step cannot honour.

    An optimizer that evaluates the loss itself (``STEP_INPUT = "closure"``: SAM, Sophia, L-BFGS) or
    wants per-example gradients (``"per_sample"``: DP-SGD) is stepped with a closure; a GradScaler cannot
    step a closure, and DP-SGD clips per example, which a batch-level ``grad_clip`` would undo, and its
    per-example gradients bypass the data-parallel gradient averaging.
    """
    kind = spec.optimizer.step_input()
    if kind == "gradients":
        return
    name = spec.optimizer.TYPE
    if spec.train.autocast == "float16":
        raise SpecError(
            f"{name} evaluates the loss inside its step (a closure), which torch's GradScaler cannot step; "
            'use autocast = "bfloat16" or none',
            path="$.train.autocast", file=spec.source,
        )
    if kind == "per_sample":
        if spec.train.grad_clip is not None:
            raise SpecError(
                f"{name} clips each example's gradient itself (its l2_norm_clip); remove grad_clip",
                path="$.train.grad_clip", file=spec.source,
            )
        if spec.parallelism.TYPE != "single":
            raise SpecError(
                f"{name} computes per-example gradients (torch.func), which the {spec.parallelism.TYPE} strategy's "
                "gradient averaging never sees; train it in one process (parallelism single)",
                path="$.parallelism.type", file=spec.source,
            )


def _local_batch(run: PreparedRun, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of one step's global batch, micro-batch after micro-batch.

    A step draws ``batch_size`` x data-parallel ranks x ``grad_accum_steps`` rows, alike on every rank
    (the batch of one process training with ``batch_size`` x ranks x accumulation rows, in the same
    order); micro-batch ``i`` is the ``i``-th run of ``batch_size`` x ranks of them, and each rank
    takes its ``batch_size`` rows of every micro-batch.
    """
    strategy = run.strategy
    size = strategy.data_parallel_size if strategy is not None else 1
    rows, accum = run.spec.train.batch_size, run.spec.train.grad_accum_steps
    inputs, targets = run.task.train_batch(gen, run.device, rows * size * accum)
    if size == 1:
        return inputs, targets
    start = strategy.data_parallel_rank * rows
    take = torch.cat([torch.arange(i * rows * size + start, i * rows * size + start + rows) for i in range(accum)])
    take = take.to(inputs.device)
    return inputs[take], targets[take]


def _forward_backward(run: PreparedRun, gen: torch.Generator) -> torch.Tensor:
    """Forward and backward over one step's micro-batches; returns this rank's mean loss (detached).

    Each micro-batch's loss is divided by ``grad_accum_steps`` before its backward, so the summed
    gradients are those of the mean loss over the whole step's batch (equal-sized micro-batches):
    the step of one batch of ``batch_size x grad_accum_steps`` rows. Under ``autocast = "float16"`` the
    losses are scaled by the run's GradScaler.
    """
    return _forward_backward_on(run, *_local_batch(run, gen))


def _forward_backward_on(run: PreparedRun, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:func:`_forward_backward` on this rank's rows of a step's batch, already drawn."""
    accum = run.spec.train.grad_accum_steps
    total = torch.zeros((), device=run.device)
    for x, y in zip(inputs.chunk(accum), targets.chunk(accum), strict=True):
        with _autocast(run.spec, run.device):
            loss = run.task.loss(run.model, x, y)
        part = loss.float() / accum
        (run.scaler.scale(part) if run.scaler is not None else part).backward()
        total += part.detach()
    return total


def _optimizer_step(run: PreparedRun, loss: torch.Tensor, grad_clip: float | None = None) -> None:
    """Clip (the unscaled gradients, under a GradScaler), hand the loss over, step; the scaler's update after."""
    optimizer, scaler = run.optimizer, run.scaler
    norm = None
    if grad_clip is not None:  # skip-step judges the norm before clipping
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = reduced(torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip))
    give_loss(optimizer, loss, grad_norm=norm)  # optimizers that take the loss, through wrappers
    if scaler is None:
        optimizer.step(lambda: loss)
        return
    # GradScaler refuses a closure keyword: the closure (returning the known loss) goes positionally.
    scaler.step(optimizer, lambda: loss)
    scaler.update()


def _train_step(run: PreparedRun, gen: torch.Generator, grad_clip: float | None = None) -> torch.Tensor:
    """One optimizer step on the next batch; returns the global batch's loss (detached, alike on every rank).

    As the optimizer's ``step_input()`` asks (:data:`optreg.specs.STEP_INPUTS`): ``"gradients"``: forward
    and backward, then the step; ``"closure"``: the step calls a closure that zeroes the gradients and runs
    forward and backward on the same batch (clipping after each backward), as often as it needs;
    ``"per_sample"``: the closure sets each parameter's per-example gradients
    (:func:`optreg.optim.per_sample_grads` of the task's loss). The loss returned is the first evaluation's.
    """
    optimizer, strategy = run.optimizer, run.strategy

    def averaged(loss: torch.Tensor) -> torch.Tensor:
        return strategy.average_over_data_parallel(loss) if strategy is not None else loss

    kind = run.spec.optimizer.step_input()
    if kind == "gradients":
        optimizer.zero_grad(set_to_none=True)
        detached = averaged(_forward_backward(run, gen))
        _optimizer_step(run, detached, grad_clip)
        return detached
    inputs, targets = _local_batch(run, gen)  # drawn once: every evaluation of the closure sees this batch
    if kind == "closure":
        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = averaged(_forward_backward_on(run, inputs, targets))
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
            return loss
    else:
        from optreg.optim import per_sample_grads

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(run.spec, run.device):
                return per_sample_grads(run.model, run.task.loss, inputs, targets)
    first: list[torch.Tensor] = []

    def recorded() -> torch.Tensor:
        loss = closure()
        first.append(loss.detach())
        return loss

    optimizer.step(recorded)
    if not first:
        raise RuntimeError(f"{type(optimizer).__name__} never called the closure its step_input() asks for")
    return first[0].float()


def _global_tokens_per_step(run: PreparedRun) -> int:
    """Tokens (or samples) one step trains on over all data-parallel ranks: the global batch's."""
    size = run.strategy.data_parallel_size if run.strategy is not None else 1
    return run.task.tokens_per_step * size


def _resolved(spec: RunSpec) -> RunSpec:
    """The spec with ``data`` made absolute (so the saved spec.toml works from any directory)."""
    if spec.train.data is None:
        return spec
    data = str(Path(spec.train.data).expanduser().resolve())
    return spec.with_table("train", attrs.evolve(spec.train, data=data))


def _extend_schedule(spec: RunSpec, out: Path, scheduler: Any, ckpt: dict[str, Any], console: Console, *,
                     rewarm: bool) -> list[Extension]:
    """Fit the schedule of a resumed run to its new length without an LR jump (or restart it with ``rewarm``).

    Called with the checkpoint loaded but before the scheduler's state: sets ``scheduler.schedule`` to the
    run's :class:`ExtendedSchedule` (its earlier extensions and, when the length changed now, a new one),
    prints what happens to the LR, and returns the extensions to save in the next checkpoints. Only a
    schedule whose shape comes from the run's length (no ``t_max`` of its own) is fitted; a warmup
    counted in steps stays where it is.
    """
    extensions = [Extension.from_dict(e) for e in ckpt.get("lr_extensions", [])]
    if not isinstance(scheduler, ScheduledLR):
        if rewarm:
            raise ValueError(f"--rewarm needs a schedule optreg evaluates; {type(scheduler).__name__} is not one")
        return extensions
    base = scheduler.schedule
    known = len(extensions)
    now = scheduler.t_max
    before = ckpt["schedule_t_max"] if "schedule_t_max" in ckpt else _horizon_of(out, base, ckpt)
    at = ckpt["scheduler"].get("current", 0)
    step = int(ckpt["step"])
    if rewarm:
        if spec.train.steps <= step:
            raise ValueError(f"--rewarm needs steps to train: the run is at step {step} of {spec.train.steps}; "
                             "ask for more with --steps")
        extensions.append(Extension(at=at, before=before, after=now, rewarm=True))
    elif base.t_max is None and base.needs_t_max() and before is not None and now != before:
        extensions.append(Extension(at=at, before=before, after=now))
    if not extensions:
        return extensions
    scheduler.schedule = ExtendedSchedule(base, extensions[0].before, extensions)
    if len(extensions) > known:
        initial = float(scheduler.base_lrs[_main_group(scheduler.optimizer)])
        end = now if now is not None else at
        curve = [scheduler.schedule.get_lr(initial, at + (end - at) * i / 64, now) for i in range(65)]
        saved = _saved_steps(out)
        note = describe_extension(
            base.TYPE, step, saved if saved is not None else step, spec.train.steps,
            lr_now=curve[0], lr_final=curve[-1], rewarm=rewarm, peak=max(curve),
        )
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    return extensions


def _main_group(optimizer: torch.optim.Optimizer) -> int:
    """The index of the param group with the most parameters (its LR is the one shown and plotted)."""
    sizes = [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups]
    return max(range(len(sizes)), key=sizes.__getitem__)


def _saved_steps(out: Path) -> int | None:
    """``[train] steps`` of the run as it was saved (before this resume's ``--steps``)."""
    try:
        return optreg.load_spec(out / "spec.toml").train.steps
    except (OSError, SpecError):
        return None


def _horizon_of(out: Path, schedule: Any, ckpt: dict[str, Any]) -> float | None:
    """The schedule's length in the run as saved, for a checkpoint that does not hold it (written before
    optreg kept it): the saved spec's run length, in the schedule's units."""
    if schedule.t_max is not None or not schedule.needs_t_max():
        return schedule.t_max
    try:
        saved = optreg.load_spec(out / "spec.toml")
    except (OSError, SpecError):
        return None
    return saved.train.run_length(schedule.units, int(ckpt.get("data_parallel_size", 1)))


def _last(history: list[dict[str, Any]], key: str) -> Any:
    """The last value of ``key`` in the records (None when no record has it)."""
    return next((r[key] for r in reversed(history) if key in r), None)


def _effective_range(history: list[dict[str, Any]]) -> dict[str, float] | None:
    """First, peak and last effective LR of the main param group (None when the optimizer reports none)."""
    values = [r["effective_lr"] for r in history if r.get("effective_lr") is not None]
    if not values:
        return None
    return {"first": values[0], "peak": max(values), "last": values[-1]}


def _warn_on_new_global_batch(console: Console, meta: dict[str, Any], strategy: Any, batch_size: int) -> None:
    """A run resumed on another number of data-parallel ranks trains on another global batch from here on."""
    before = int(meta.get("data_parallel_size", meta.get("world_size", 1)))
    now = strategy.data_parallel_size
    if before != now:
        console.print(
            f"[yellow]note:[/yellow] the run was trained on {before} data-parallel rank(s) and resumes on {now}: "
            f"the global batch changes from {batch_size * before} to {batch_size * now} rows (batch_size x ranks), "
            "so the rest of the run differs from an unbroken one"
        )


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Refuse to train into a directory that holds another run, unless ``overwrite``."""
    taken = [name for name in (CHECKPOINT, DISTRIBUTED_CHECKPOINT, "metrics.jsonl") if (out / name).exists()]
    if taken and not overwrite:
        raise RunDirError(
            f"{out} already holds a run ({', '.join(taken)}); continue it with --resume {out}, "
            "choose another --out, or pass --overwrite"
        )


def train_run(
    spec: RunSpec,
    out: Path | str,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    overwrite: bool = False,
    name: str | None = None,
    console: Console | None = None,
    progress: Progress | None = None,
    show_progress: bool = True,
    plots: bool = True,
    prepared: PreparedRun | None = None,
    rewarm: bool = False,
    header: str | None = None,
) -> RunResult:
    """Train ``spec`` into ``out``; with ``resume`` continue the run whose checkpoint is in ``out``.

    ``stop_after`` stops (with a checkpoint) once that many steps are done in
    total; the schedule still spans ``spec.train.steps``. Ctrl-C stops after the
    current step with a checkpoint (status ``interrupted``). A resumed run whose
    ``steps`` changed carries its LR on from where it was (the rest of the schedule
    stretched over the new remainder: :mod:`optreg_train.extension`), or, with
    ``rewarm``, starts the schedule again over the new remainder. ``header`` (a line saying what runs) is
    printed once the spec has built and stepped (a resumed run: once its checkpoint fits), never above an error.
    """
    out = Path(out)
    spec = _resolved(spec)
    name = name or out.name
    console = console or Console()
    if not resume:
        check_out_dir(out, overwrite=overwrite)
    if prepared is None:
        task = load_task(spec.train, file=spec.source)
        preflight(spec, task)
        prepared = prepare_run(spec, task)
    if header and not resume:  # printed once the spec is known to build and step: no header above an error
        console.print(header, markup=False, highlight=False, soft_wrap=True)
    run = prepared
    task, model, optimizer, scheduler = run.task, run.model, run.optimizer, run.scheduler
    strategy = run.strategy if run.strategy is not None else ParallelismStrategy()
    is_main = strategy.rank == 0  # only rank 0 prints and writes files (every rank writes its checkpoint shards)
    if not is_main:
        console, show_progress, plots, progress = Console(quiet=True), False, False, None
    train = spec.train
    memory = PeakMemory(run.device)
    metrics_path = out / "metrics.jsonl"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    if strategy.is_distributed:
        import torch.distributed as dist

        dist.barrier()  # the directory exists before any rank writes its shards

    step = 0
    tokens = 0
    elapsed = 0.0
    skipped_total = 0
    history: list[dict[str, Any]] = []
    extensions: list[Extension] = []
    if rewarm and not resume:
        raise ValueError("rewarm restarts the schedule of a resumed run: use it with --resume")
    if resume:
        newest = newest_checkpoint(out)
        if newest is None:
            raise RunDirError(f"{out} holds no checkpoint to resume ({CHECKPOINT} or {DISTRIBUTED_CHECKPOINT}/)")
        meta = newest[1]
        if meta.get("data_fingerprint") != task.fingerprint:
            raise RunDirError(
                f"the data differs from the run in {out} (fingerprint {task.fingerprint}, the checkpoint has "
                f"{meta.get('data_fingerprint')}): was the data file or the Python version changed?"
            )
        if int(meta["step"]) > train.steps:
            raise RunDirError(
                f"the run in {out} is already at step {meta['step']}; ask for at least that many steps"
            )
        if header:
            console.print(header, markup=False, highlight=False, soft_wrap=True)
        _warn_on_new_global_batch(console, meta, strategy, train.batch_size)
        switch = _has_mode_switch(optimizer)
        initialize_state(optimizer)  # the state's layout to load into, made while in training mode
        if switch:
            optimizer.eval()  # the checkpoint holds evaluation-mode parameters and state
        ckpt = load_run_state(out, model, optimizer, strategy)
        extensions = _extend_schedule(spec, out, scheduler, ckpt, console, rewarm=rewarm)
        scheduler.load_state_dict(ckpt["scheduler"])
        if run.scaler is not None and "grad_scaler" in ckpt:
            run.scaler.load_state_dict(ckpt["grad_scaler"])
        if switch:
            optimizer.train()  # back to the training parameters, as in an unbroken run
        torch.set_rng_state(ckpt["rng"]["torch"])
        run.data_gen.set_state(ckpt["rng"]["data"])
        if run.device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], run.device)
        step, tokens, elapsed = int(ckpt["step"]), int(ckpt["tokens"]), float(ckpt["elapsed"])
        skipped_total = int(ckpt.get("skipped", 0))
        history = read_metrics(metrics_path, upto=step)
    if is_main:
        (out / "spec.toml").write_text(optreg.dump_spec(spec))
        with metrics_path.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)

    end = train.steps if stop_after is None else min(train.steps, stop_after)
    skip_flag = _skipped_flag(optimizer)
    counts_skips = skip_flag is not None
    group_names = [str(g.get("group_name", f"group {i}")) for i, g in enumerate(optimizer.param_groups)]
    main_group = _main_group(optimizer)  # the LR shown and plotted
    val_losses = [r["val_loss"] for r in history if r.get("val_loss") is not None]
    status: Status = "finished"

    def evaluate() -> tuple[float, float | None]:
        """The held-out loss, and the accuracy for a classification task (None otherwise)."""
        total, count, correct = 0.0, 0, 0
        with torch.no_grad(), _eval_params(optimizer, model), _autocast(spec, run.device):
            for inputs, targets in task.val_batches(run.device):
                loss_sum, right = task.eval_batch(model, inputs, targets)
                total += loss_sum
                count += targets.numel()
                correct += right or 0
        return total / count, (correct / count if task.reports_accuracy else None)

    def checkpoint() -> None:
        rng = {"torch": torch.get_rng_state(), "data": run.data_gen.get_state()}
        if run.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(run.device)
        meta = {
            "step": step,
            "tokens": tokens,
            "elapsed": elapsed,
            "skipped": skipped_total,
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "data_fingerprint": task.fingerprint,
            "optimizer_type": spec.optimizer.TYPE,
            "scheduler_type": spec.scheduler.TYPE,
            "world_size": strategy.world_size,
            "data_parallel_size": strategy.data_parallel_size,
            "schedule_t_max": getattr(scheduler, "t_max", None),
            "lr_extensions": [e.to_dict() for e in extensions],
        }
        if run.scaler is not None:
            meta["grad_scaler"] = run.scaler.state_dict()
        with _eval_params(optimizer, model):
            save_run_state(out, model, optimizer, strategy, meta)

    own_progress = progress is None and show_progress
    if own_progress:
        progress = make_progress(console)
    task_id = None
    if progress is not None:
        task_id = progress.add_task(
            escape(name), total=train.steps, completed=step, loss="-", val="-", lr="-", speed=""
        )
    memory.reset()
    session_tokens, session_train_time = 0, 0.0
    if strategy.is_distributed:
        stop = _StopFlag((signal.SIGINT, signal.SIGTERM), repeat=True)
    else:
        stop = _StopFlag((signal.SIGINT,))
    unit_label = "tok/s" if task.unit == "tokens" else "samples/s"
    scheduler_counts_tokens = spec.scheduler.units == "tokens"
    tokens_per_step = _global_tokens_per_step(run)
    with contextlib.ExitStack() as stack:
        if own_progress:
            stack.enter_context(progress)  # type: ignore[arg-type]
        stack.enter_context(stop.installed())
        metrics_file = stack.enter_context(metrics_path.open("a") if is_main else open(os.devnull, "w"))  # noqa: SIM115
        model.train()
        while step < end:
            started = time.perf_counter()
            lrs = _lrs(optimizer)
            # the global batch's loss (the mean over the data-parallel ranks' slices), on every rank alike
            detached = _train_step(run, run.data_gen, train.grad_clip)
            effective = effective_lrs(optimizer)  # the step size the optimizer took, where it sets its own
            if scheduler_counts_tokens:
                scheduler.step(tokens=tokens_per_step)
            else:
                scheduler.step()
            loss_value = float(detached)
            step += 1
            tokens += tokens_per_step
            record: dict[str, Any] = {"step": step, "loss": json_number(loss_value), "lr": lrs[main_group]}
            if len(set(lrs)) > 1:
                record["lrs"] = lrs
            if effective is not None:
                record["effective_lr"] = json_number(effective[main_group])
                if len(set(effective)) > 1:
                    record["effective_lrs"] = [json_number(v) for v in effective]
            if counts_skips:
                skipped = bool(_skipped_flag(optimizer))
                skipped_total += skipped
                record["skipped"] = skipped
            record["tokens"] = tokens
            spent = time.perf_counter() - started
            session_train_time += spent
            session_tokens += tokens_per_step
            diverged = not math.isfinite(loss_value)
            stopping = stop.agreed(strategy)  # read once (a later Ctrl-C is handled after the next step), by all ranks
            evaluation_step = step % train.eval_interval == 0 or step in (train.steps, end) or stopping
            if not diverged and evaluation_step:
                val, accuracy = evaluate()
                record["val_loss"] = json_number(val)
                if accuracy is not None:
                    record["val_accuracy"] = accuracy
                val_losses.append(val)
                diverged = not math.isfinite(val)
            elapsed += time.perf_counter() - started
            record["time"] = round(elapsed, 4)
            history.append(record)
            metrics_file.write(json.dumps(record) + "\n")
            if diverged:
                status = "diverged"
                break
            if "val_loss" in record:
                saving = time.perf_counter()
                metrics_file.flush()
                checkpoint()
                elapsed += time.perf_counter() - saving
            if progress is not None and task_id is not None:
                speed = session_tokens / session_train_time if session_train_time > 0 else 0.0
                progress.update(
                    task_id,
                    completed=step,
                    loss=f"{loss_value:.3f}",
                    val=f"{val_losses[-1]:.3f}" if val_losses else "-",
                    lr=f"{(effective or lrs)[main_group]:.2e}",
                    speed=f"{speed:,.0f} {unit_label}",
                )
            if stopping:  # evaluated and checkpointed above
                status = "interrupted"
                break
        else:
            if step < train.steps:
                status = "stopped"
    peak = memory.peak()
    losses = [r["loss"] if r["loss"] is not None else math.nan for r in history]
    result = RunResult(
        name=name,
        out=out,
        spec=spec,
        status=status,
        step=step,
        steps=train.steps,
        train_loss=mean_last(losses, TRAIN_LOSS_WINDOW),
        val_loss=val_losses[-1] if val_losses and status != "diverged" else math.nan,
        best_val_loss=min(val_losses) if val_losses else math.nan,
        wall_time=elapsed,
        tokens=tokens,
        tokens_per_second=session_tokens / session_train_time if session_train_time > 0 else math.nan,
        peak_memory=peak,
        peak_memory_kind=memory.kind,
        state_bytes=optimizer_state_bytes(optimizer),
        n_params=sum(p.numel() for p in model.parameters()),
        skipped_steps=skipped_total if counts_skips else None,
        unit=task.unit,
        data=f"{task.source} (sha256 {task.fingerprint})",
        history=history,
        group_names=group_names,
        val_accuracy=_last(history, "val_accuracy") if status != "diverged" else None,
        effective_lr=_effective_range(history),
    )
    if is_main:
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if plots:
        from optreg_train.plots import plot_run

        plot_run(result, console=console)
    return result
