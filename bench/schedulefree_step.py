"""Step time of the schedule-free optimizers against torch's fused AdamW and the `schedulefree` package.

    python bench/schedulefree_step.py [--tensors 8] [--size 1024] [--steps 10] [--threads N] [--no-compile]

Every optimizer steps the same parameters (``tensors`` fp32 matrices of
``size x size``) with fixed gradients, in one run. Printed per optimizer:
ms per step; ``x fused`` = time / fused AdamW's time; ``x fused/byte`` = that
ratio normalised by the bytes each algorithm must move at least (1.0 = as
bandwidth-efficient as fused AdamW); ``x ref`` = time / the `schedulefree`
package's time with the same loop kind (its default is foreach; the ``compiled`` rows,
``compile = true``, are compared with that default), when installed.
Ratios come from this run only: compare them, not the absolute times, across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import optreg

# Minimal fp32 words moved per parameter per step: params r+w, grad r, state r+w.
WORDS = {
    "adamw (fused)": 2 + 1 + 4,
    "schedule_free_adamw": 2 + 1 + 4,  # z, exp_avg_sq
    "schedule_free_sgd": 2 + 1 + 2,  # z
    "schedule_free_radam": 2 + 1 + 4,
    "schedule_free(sgd)": 2 + 1 + 2 + 2,  # z, and the inner SGD's r+w of the parameters
}

CASES = [
    ("schedule_free_adamw", {"type": "schedule_free_adamw"}, "AdamWScheduleFree", {}),
    ("schedule_free_sgd", {"type": "schedule_free_sgd"}, "SGDScheduleFree", {}),
    ("schedule_free_radam", {"type": "schedule_free_radam"}, "RAdamScheduleFree", {}),
]


def _reference(cls_name: str | None, foreach: bool) -> Callable | None:
    try:
        import schedulefree
    except ImportError:
        return None
    if cls_name is None:
        return lambda ps: schedulefree.ScheduleFreeWrapper(torch.optim.SGD(ps, lr=1.0), momentum=0.9)
    cls = getattr(schedulefree, cls_name)
    return lambda ps: cls(ps, foreach=foreach)


def time_steps(make: Callable, params: list[torch.Tensor], steps: int) -> float:
    """Median seconds per step of ``make(params)`` after 3 warm-up steps (in train mode)."""
    work = [p.detach().clone().requires_grad_(True) for p in params]
    g = torch.Generator().manual_seed(1)
    for p in work:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    optimizer = make(work)
    if hasattr(optimizer, "train"):
        optimizer.train()
    for _ in range(3):
        optimizer.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile = true rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = [torch.randn(args.size, args.size) * 0.02 for _ in range(args.tensors)]
    numel = sum(p.numel() for p in params)
    print(f"{args.tensors} x {args.size}^2 fp32 = {numel / 1e6:.1f}M params, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    base = time_steps(lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True), params, args.steps)
    base_per_byte = base / (WORDS["adamw (fused)"] * 4 * numel)
    print(f"{'optimizer':30s} {'ms/step':>9s} {'x fused':>8s} {'x fused/byte':>13s} {'x ref':>7s}")
    print(f"{'adamw (fused)':30s} {base * 1e3:9.2f} {1.0:8.2f} {1.0:13.2f}")
    # (name, label, spec, reference class, the reference's foreach)
    rows = [
        (name, f"{name} ({'foreach' if foreach else 'loop'})", {**spec, "foreach": foreach}, ref, foreach)
        for name, spec, ref, _ in CASES for foreach in (False, True)
    ]
    if not args.no_compile:  # vs the reference's default (foreach) path
        rows += [(name, f"{name} (compiled)", {**spec, "compile": True}, ref, True)
                 for name, spec, ref, _ in CASES if name != "schedule_free_sgd"]
    rows.append(("schedule_free(sgd)", "schedule_free(sgd)",
                 {"type": "schedule_free", "inner": {"type": "sgd", "lr": 1.0}}, None, False))
    for name, label, spec, ref_name, ref_foreach in rows:
        ours = time_steps(lambda ps, spec=spec: optreg.build_optimizer(spec, ps), params, args.steps)
        per_byte = ours / (WORDS[name] * 4 * numel)
        make_ref = _reference(ref_name, ref_foreach)
        ref = f"{ours / time_steps(make_ref, params, args.steps):7.2f}" if make_ref else f"{'n/a':>7s}"
        print(f"{label:30s} {ours * 1e3:9.2f} {ours / base:8.2f} {per_byte / base_per_byte:13.2f} {ref}")


if __name__ == "__main__":
    main()
