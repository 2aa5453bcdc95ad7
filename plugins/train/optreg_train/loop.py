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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import optreg
from optreg.errors import SpecError
from optreg.optim import give_loss, reduced
from optreg.parallel import ParallelismStrategy, initialize_state
from optreg.runspec import RunSpec
from optreg_train.checkpoint import (
    CHECKPOINT,
    DISTRIBUTED_CHECKPOINT,
    load_run_state,
    newest_checkpoint,
    save_run_state,
)
from optreg_train.metrics import PeakMemory, json_number, mean_last, optimizer_state_bytes, read_metrics
from optreg_train.results import TRAIN_LOSS_WINDOW, RunResult, Status
from optreg_train.tasks import Task, load_task

__all__ = ["RunDirError", "RunResult", "make_progress", "preflight", "prepare_run", "resolve_device", "train_run"]



class RunDirError(ValueError):
    """The output directory cannot be used as asked (already holds a run, or holds none to resume)."""




def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' asked for, but CUDA is not available here", path="$.train.device")
    return torch.device(name)


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


def prepare_run(spec: RunSpec, task: Task | None = None) -> PreparedRun:
    """Load the task and build model, optimizer and scheduler (SpecErrors surface here, before training)."""
    train = spec.train
    device = resolve_device(train.device)
    task = task or load_task(train, file=spec.source)
    torch.manual_seed(train.seed)
    model = task.make_model().to(device)
    _check_launch(spec)
    built = spec.build(model)  # the schedule spans [train]'s run length (in tokens: the global batch's)
    device = getattr(built.strategy, "device", None) or device
    if _has_mode_switch(built.optimizer):
        built.optimizer.train()
    data_gen = torch.Generator().manual_seed(train.seed)
    return PreparedRun(spec, task, device, built.model, built.optimizer, built.scheduler, data_gen, built.strategy)


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
        inputs, targets = _local_batch(run, gen)
        loss = run.task.loss(run.model, inputs, targets)
        loss.backward()
        detached = run.strategy.average_over_data_parallel(loss.detach()) if run.strategy else loss.detach()
        give_loss(run.optimizer, detached)
        run.optimizer.step(lambda: detached)
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


def _local_batch(run: PreparedRun, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of the global batch (``batch_size`` x data-parallel ranks rows, drawn alike on every
    rank): the batches of one process training with that global batch, in the same order."""
    strategy = run.strategy
    size = strategy.data_parallel_size if strategy is not None else 1
    if size == 1:
        return run.task.train_batch(gen, run.device)
    rows = run.spec.train.batch_size
    inputs, targets = run.task.train_batch(gen, run.device, rows * size)
    start = strategy.data_parallel_rank * rows
    return inputs[start:start + rows], targets[start:start + rows]


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
) -> RunResult:
    """Train ``spec`` into ``out``; with ``resume`` continue the run whose checkpoint is in ``out``.

    ``stop_after`` stops (with a checkpoint) once that many steps are done in
    total; the schedule still spans ``spec.train.steps``. Ctrl-C stops after the
    current step with a checkpoint (status ``interrupted``).
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
        _warn_on_new_global_batch(console, meta, strategy, train.batch_size)
        switch = _has_mode_switch(optimizer)
        initialize_state(optimizer)  # the state's layout to load into, made while in training mode
        if switch:
            optimizer.eval()  # the checkpoint holds evaluation-mode parameters and state
        ckpt = load_run_state(out, model, optimizer, strategy)
        scheduler.load_state_dict(ckpt["scheduler"])
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
    # The LR shown and plotted is the one of the param group with the most parameters.
    sizes = [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups]
    main_group = max(range(len(sizes)), key=sizes.__getitem__)
    val_losses = [r["val_loss"] for r in history if r.get("val_loss") is not None]
    status: Status = "finished"

    def evaluate() -> float:
        total, count = 0.0, 0
        with torch.no_grad(), _eval_params(optimizer, model):
            for inputs, targets in task.val_batches(run.device):
                loss = task.loss(model, inputs, targets)
                total += float(loss) * targets.numel()
                count += targets.numel()
        return total / count

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
        }
        with _eval_params(optimizer, model):
            save_run_state(out, model, optimizer, strategy, meta)

    own_progress = progress is None and show_progress
    if own_progress:
        progress = make_progress(console)
    task_id = None
    if progress is not None:
        task_id = progress.add_task(name, total=train.steps, completed=step, loss="-", val="-", lr="-", speed="")
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
            inputs, targets = _local_batch(run, run.data_gen)
            lrs = _lrs(optimizer)
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model, inputs, targets)
            loss.backward()
            norm = None
            if train.grad_clip is not None:  # skip-step judges the norm before clipping
                norm = reduced(torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip))
            # the global batch's loss (the mean over the data-parallel ranks' slices), on every rank alike
            detached = strategy.average_over_data_parallel(loss.detach())
            give_loss(optimizer, detached, grad_norm=norm)  # optimizers that take the loss, through wrappers
            optimizer.step(lambda detached=detached: detached)
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
                val = evaluate()
                record["val_loss"] = json_number(val)
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
                    lr=f"{lrs[main_group]:.2e}",
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
    )
    if is_main:
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if plots:
        from optreg_train.plots import plot_run

        plot_run(result, console=console)
    return result
