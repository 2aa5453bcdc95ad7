"""The main job's overhead: ``optreg train``'s step against a minimal hand-written torch loop.

    python bench/train_overhead.py [--steps 60] [--repeats 3] [--d-model 128] [--optimizer adamw] [--threads N]

Both train the same model (the char_lm task's transformer, same seed), with the same optimizer (built from
the same ``[optimizer]`` table by optreg) and the same batches (the task's, from the same generator), one
step at a time: ``optreg train`` (``train_run``: schedule, metrics line, loss logging, skip counting, progress
off) and a loop of ``zero_grad; loss = task.loss(model, x, y); loss.backward(); optimizer.step()``. Printed:
each one's median step time and tokens/s over the steps between evaluations (optreg's per-step wall time
comes from its metrics file's ``time``, so its bookkeeping between steps is counted), the runs alternated
``--repeats`` times, and the ratio ``optreg / hand`` of tokens/s (target: >= 0.95). Nothing is asserted:
on a shared machine only the ratio within one run means anything.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch
from optreg_train import train_run
from optreg_train.metrics import read_metrics
from optreg_train.tasks import load_task

import optreg


def run_spec(args: argparse.Namespace) -> optreg.RunSpec:
    return optreg.parse_spec({
        "optimizer": {"type": args.optimizer},
        "train": {
            "task": "char_lm", "steps": args.steps, "eval_interval": args.steps, "eval_batches": 1,
            "d_model": args.d_model, "n_layers": args.layers, "n_heads": 4, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "seed": 0,
        },
    })


def optreg_step_times(spec: optreg.RunSpec, out: Path) -> list[float]:
    """Per-step wall times of an ``optreg train`` run (its metrics' cumulative ``time``; the last step, which
    evaluates and checkpoints, left out)."""
    train_run(spec, out, show_progress=False, plots=False, overwrite=True)
    times = [r["time"] for r in read_metrics(out / "metrics.jsonl")]
    steps = [b - a for a, b in itertools.pairwise(times)]
    return steps[:-1]  # the final step carries the evaluation and the checkpoint


def hand_step_times(spec: optreg.RunSpec) -> list[float]:
    """Per-step wall times of the minimal loop on the same model, optimizer and batches."""
    task = load_task(spec.train)
    torch.manual_seed(spec.train.seed)
    model = task.make_model()
    optimizer = optreg.build_optimizer(spec.optimizer, model)
    gen = torch.Generator().manual_seed(spec.train.seed)
    rows = spec.train.batch_size
    model.train()
    out = []
    for _ in range(spec.train.steps):
        start = time.perf_counter()
        x, y = task.train_batch(gen, torch.device("cpu"), rows)
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model, x, y)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # a loop logs its loss too
        out.append(time.perf_counter() - start)
    return out[1:-1]  # as optreg's: the first (state creation) and the last left out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = run_spec(args)
    tokens = spec.train.tokens_per_step
    ours: list[float] = []
    hand: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternated, so both see the same machine load
            ours += optreg_step_times(spec, Path(tmp) / f"run{i}")
            hand += hand_step_times(spec)
    n_params = sum(p.numel() for p in load_task(spec.train).make_model().parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; char_lm transformer d_model "
          f"{args.d_model} x {args.layers} layers ({n_params:,} params), {args.optimizer}, {tokens} tokens/step, "
          f"{args.steps} steps x {args.repeats} runs each")
    for label, times in (("optreg train", ours), ("hand-written loop", hand)):
        median = statistics.median(times)
        print(f"{label:<18} {median * 1e3:8.2f} ms/step  {tokens / median:10,.0f} tok/s  "
              f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f} ms)")
    ratio = statistics.median(hand) / statistics.median(ours)
    print(f"optreg train / hand loop tokens/s: {ratio:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
