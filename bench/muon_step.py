"""Muon step time vs torch.optim.Muon, batched vs one call per matrix, and Newton-Schulz GFLOP/s vs matmul peak.

Run: ``.venv/bin/python bench/muon_step.py`` (``--help`` for options). Prints, in one run:

1. ``torch.mm`` peak GFLOP/s for fp32 and bf16 (best of the three operand layouts torch
   dispatches differently, on a 1024 x 4096 x 1024 product);
2. Newton-Schulz (5 steps, 1024 x 4096) GFLOP/s of optreg-muon's kernel, nominal FLOPs
   (whole products), as a fraction of those peaks;
3. the step time of ``muon`` configurations (the default, the 4-step ``turbo_aol`` preset, ...)
   as ratios to ``torch.optim.Muon`` on the same matrices, gradients and quintic (6 x 1024x1024
   by default): every round steps each optimizer once, in turn, and the ratio of a round is
   taken against torch's step of that round; the median and the quartiles of those ratios
   are printed, so a load that changes slowly cancels out;
4. batched vs one Newton-Schulz call per matrix: the default step on matrices of one shape with
   batching forced on and forced off (``optreg_muon.functional.matrix.BATCH_MAX_ELEMENTS_PER_THREAD``),
   alternated the same way, and what the rule (``batch_blocks``) picks at that size.

``--cpu-time`` measures process CPU time instead of wall time: with ``--threads 1`` that is the
figure a busy machine disturbs least (a shared machine's other jobs preempt our threads, which
costs wall time, not CPU time, and with one thread nothing waits for a preempted one).

On CPUs without native bf16 GEMMs (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is
False: AVX2-only machines) torch's bf16 products are 10-100x slower than fp32 ones, so
``torch.optim.Muon`` (bf16 hard-coded) takes tens of seconds per matrix. There, unless
``--full-baseline`` is given, its step time is measured once on one matrix of each shape and
multiplied by the count (torch.optim.Muon loops over parameters, so its step time is the sum
of per-matrix times), and the ratios are against that figure; the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator

import torch
from optreg_muon import Muon
from optreg_muon.functional import matrix
from optreg_muon.functional.newton_schulz import (
    gains_along_input,
    native_bf16_gemm,
    newton_schulz,
    newton_schulz_flops,
    polar_factor,
    resolve_coefficients,
)

PRESET = {"preconditioning": "aol", "ns_steps": 4, "ns_coefficients": "turbo_aol"}
CONFIGS: dict[str, dict] = {
    "muon default (quintic x5, frobenius)": {},
    "muon preset turbo_aol x4 (aol)": PRESET,
    "muon aol x4 (quintic)": {"preconditioning": "aol", "ns_steps": 4},
    "muon default, foreach=false": {"foreach": False},
    "muon default, foreach=true": {"foreach": True},
    "muon fp32 NS (quintic x5)": {"ns_dtype": "float32"},
}
#: Shapes and counts of the batched-vs-unbatched table (about the same work per row up to 512x512).
BATCH_SIZES = [((64, 64), 32), ((128, 128), 24), ((256, 256), 12), ((128, 1024), 8), ((384, 384), 8),
               ((256, 1024), 6), ((512, 512), 6), ((1024, 1024), 6), ((1024, 4096), 3)]


def _clock(cpu: bool) -> Callable[[], float]:
    return time.process_time if cpu else time.perf_counter


def _time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mm_peak(dtype: torch.dtype, repeats: int) -> tuple[float, str]:
    m, k, n = 1024, 4096, 1024
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    a_t = a.T.contiguous().T  # column-major views of the same values
    b_t = b.T.contiguous().T
    layouts = {"a@b": (a, b), "a@b (b col-major)": (a, b_t), "a@b (a col-major)": (a_t, b)}
    best, best_name = 0.0, ""
    for name, (x, y) in layouts.items():
        seconds = _time(lambda x=x, y=y: x @ y, repeats)
        rate = 2 * m * k * n / seconds / 1e9
        if rate > best:
            best, best_name = rate, name
    return best, best_name


def ns_rate(dtype: torch.dtype, repeats: int, steps: int = 5) -> float:
    g = torch.randn(1024, 4096)
    coefficients = resolve_coefficients("muon", steps)
    seconds = _time(lambda: newton_schulz(g, coefficients, dtype=dtype), repeats)
    return newton_schulz_flops(1024, 4096, steps) / seconds / 1e9


def make_params(shapes: list[tuple[int, int]], seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(*s, generator=g) * 0.02) for s in shapes]
    grads = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=grads) * 0.01
    return params


@contextlib.contextmanager
def batch_bound(bound: int | None) -> Iterator[None]:
    """Force the CPU batching rule's bound per thread for the duration (None: leave the rule as it is)."""
    saved = matrix.BATCH_MAX_ELEMENTS_PER_THREAD
    if bound is not None:
        matrix.BATCH_MAX_ELEMENTS_PER_THREAD = bound
    try:
        yield
    finally:
        matrix.BATCH_MAX_ELEMENTS_PER_THREAD = saved


def alternate(steps: dict[str, Callable[[], object]], rounds: int, cpu: bool) -> dict[str, list[float]]:
    """Seconds per step of each candidate: one warm-up step each, then ``rounds`` rounds of one step each, in turn."""
    clock = _clock(cpu)
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = clock()
            step()
            times[name].append(clock() - start)
    return times


def ratio_stats(times: list[float], base: list[float] | float) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios ``times / base``."""
    bases = base if isinstance(base, list) else [base] * len(times)
    ratios = [t / b for t, b in zip(times, bases)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q1, q3


def step_ratios(args: argparse.Namespace, native: bool) -> None:
    shapes = [(1024, 1024)] * args.square + [(1024, 4096)] * args.wide + [(4096, 1024)] * args.tall
    params_m = sum(r * c for r, c in shapes) / 1e6
    what = "CPU" if args.cpu_time else "wall"
    print(f"\nmodel: {dict(Counter(shapes))} ({params_m:.1f}M params); {args.rounds} alternating rounds, {what} "
          "time; ratio = median of the per-round ratios to torch.optim.Muon [quartiles]")
    steps: dict[str, Callable[[], object]] = {}
    if native or args.full_baseline:
        torch_opt = torch.optim.Muon(make_params(shapes), lr=0.02, weight_decay=0.0)
        steps["torch.optim.Muon"] = torch_opt.step
        fixed = None
    else:
        fixed = 0.0
        for shape, count in Counter(shapes).items():
            one = torch.optim.Muon(make_params([shape]), lr=0.02, weight_decay=0.0)
            start = _clock(args.cpu_time)()
            one.step()
            fixed += count * (_clock(args.cpu_time)() - start)
    for name, options in CONFIGS.items():
        steps[name] = Muon(make_params(shapes), lr=0.02, **options).step
    times = alternate(steps, args.rounds, args.cpu_time)
    base: list[float] | float = times["torch.optim.Muon"] if fixed is None else fixed
    if fixed is not None:
        print(f"{'torch.optim.Muon':40s} {fixed * 1e3:9.1f} ms   (one matrix per shape, one step, times count: "
              "bf16 GEMMs not native here)")
    default = times[next(iter(CONFIGS))]
    for name, t in times.items():
        med, q1, q3 = ratio_stats(t, base)
        ours = "" if name == "torch.optim.Muon" else f"   vs our default {ratio_stats(t, default)[0]:.3f}"
        print(f"{name:40s} {statistics.median(t) * 1e3:9.1f} ms   ratio {med:.3f} [{q1:.3f}, {q3:.3f}]{ours}")


def batching_table(args: argparse.Namespace) -> None:
    what = "CPU" if args.cpu_time else "wall"
    print(f"\nbatched vs one call per matrix (default muon step, {what} time, {args.batch_rounds} alternating rounds; "
          f"rule: batch on CPU up to {matrix.BATCH_MAX_ELEMENTS_PER_THREAD} elements x {torch.get_num_threads()} "
          "threads)")
    print(f"{'shape x count':18s} {'batched ms':>11s} {'per-matrix ms':>14s} {'batched / per-matrix':>22s}  rule picks")
    for shape, count in BATCH_SIZES:
        batched = Muon(make_params([shape] * count), lr=0.02)
        single = Muon(make_params([shape] * count), lr=0.02)

        def run_batched(opt: Muon = batched) -> None:
            with batch_bound(2**62):
                opt.step()

        def run_single(opt: Muon = single) -> None:
            with batch_bound(0):
                opt.step()

        times = alternate({"batched": run_batched, "single": run_single}, args.batch_rounds, args.cpu_time)
        med, q1, q3 = ratio_stats(times["batched"], times["single"])
        pick = "batched" if matrix.batch_blocks(shape, torch.device("cpu")) else "per-matrix"
        label = f"{shape[0]}x{shape[1]} x{count}"
        print(f"{label:18s} {statistics.median(times['batched']) * 1e3:11.2f} "
              f"{statistics.median(times['single']) * 1e3:14.2f}   {med:.3f} [{q1:.3f}, {q3:.3f}]  {pick}")


def _orthogonality(X: torch.Tensor, G: torch.Tensor) -> tuple[float, float, float, float]:
    """max |sigma - 1|, distance to the exact polar factor of ``G`` (relative, Frobenius), min and max sigma."""
    X = X.double()
    P = polar_factor(G)
    sigma = torch.linalg.svdvals(X)
    return float((sigma - 1).abs().max()), float((X - P).norm() / P.norm()), float(sigma.min()), float(sigma.max())


def _char_lm_updates(steps: int = 60) -> dict[str, torch.Tensor]:
    """Newton-Schulz inputs of real training: char_lm (d_model 256) after ``steps`` default muon steps, the
    next step's Nesterov momentum of every hidden matrix."""
    from optreg_train.specs import TrainSpec
    from optreg_train.tasks import load_task

    import optreg

    torch.manual_seed(0)
    task = load_task(TrainSpec(d_model=256, n_layers=2, n_heads=4, seq_len=128, batch_size=16, steps=steps))
    model = task.make_model()
    opt = optreg.build_optimizer({"type": "muon", "lr": 0.02, "adam_lr": 3e-3}, model)
    gen = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    for step in range(steps + 1):  # the last backward gives the gradient of the step not taken
        opt.zero_grad()
        task.loss(model, *task.train_batch(gen, cpu)).backward()
        if step < steps:
            opt.step()
    updates = {}
    for group in opt.param_groups:
        if group["algorithm"] == "muon":
            for name, p in zip(group["param_names"], group["params"]):
                buf = torch.lerp(opt.state[p]["momentum_buffer"], p.grad, 1 - group["momentum"])
                updates[name] = p.grad.lerp(buf, group["momentum"])
    return updates


def orthogonality_table() -> None:
    """The orthogonality measures of the default and the preset (bf16, as a step runs them)."""
    configs = {"default (quintic x5, frobenius)": ("muon", 5, "frobenius"),
               "preset turbo_aol x4 (aol)": ("turbo_aol", 4, "aol")}
    print("\northogonality (bf16): max |sigma - 1| / distance to the polar factor U V^T of the input / sigma band")
    inputs = {f"Gaussian {r}x{c}": torch.randn(r, c, generator=torch.Generator().manual_seed(0))
              for r, c in ((1024, 1024), (1024, 4096))}
    try:
        real = _char_lm_updates()
    except ImportError:
        real = {}
        print("(optreg-train not installed: no char_lm gradients)")
    for label, G in inputs.items():
        for name, (preset, steps, pc) in configs.items():
            m = _orthogonality(newton_schulz(G, resolve_coefficients(preset, steps), preconditioning=pc), G)
            print(f"  {label:22s} {name:34s} {m[0]:.3f} / {m[1]:.3f} / [{m[2]:.3f}, {m[3]:.3f}]")
    if real:
        shapes = ", ".join(sorted({"x".join(map(str, g.shape)) for g in real.values()}))
        print(f"  char_lm d_model 256, {len(real)} matrices ({shapes}): worst max |sigma - 1|, mean and worst "
              "distance, largest sigma;\n  gain d_i = u_i^T X v_i along the input's singular pairs: worst max |d - 1| "
              "where the input's sigma_i >= 1% of its largest, mean |d - 1| over all pairs")
        for name, (preset, steps, pc) in configs.items():
            outs = [(newton_schulz(G, resolve_coefficients(preset, steps), preconditioning=pc), G)
                    for G in real.values()]
            ms = [_orthogonality(X, G) for X, G in outs]
            gains = [gains_along_input(X, G) for X, G in outs]
            print(f"  {'':22s} {name:34s} {max(m[0] for m in ms):.3f} / {sum(m[1] for m in ms) / len(ms):.3f} "
                  f"(worst {max(m[1] for m in ms):.3f}) / sigma max {max(m[3] for m in ms):.3f}; "
                  f"gain: {max(g[0] for g in gains):.3f} / {sum(g[1] for g in gains) / len(gains):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--square", type=int, default=6, help="number of 1024x1024 matrices")
    parser.add_argument("--wide", type=int, default=0, help="number of 1024x4096 matrices")
    parser.add_argument("--tall", type=int, default=0, help="number of 4096x1024 matrices")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds of the step-time ratios")
    parser.add_argument("--batch-rounds", type=int, default=9, help="alternating rounds per batching row")
    parser.add_argument("--repeats", type=int, default=3, help="timed products for the GFLOP/s lines (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    parser.add_argument("--skip-peaks", action="store_true", help="leave out the GFLOP/s lines")
    parser.add_argument("--skip-batching", action="store_true", help="leave out the batched vs per-matrix table")
    parser.add_argument("--full-baseline", action="store_true", help="time torch.optim.Muon on every matrix")
    parser.add_argument("--orthogonality", action="store_true",
                        help="also print the orthogonality of the default and the preset (Gaussian and char_lm inputs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    native = native_bf16_gemm(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16 GEMM: {native}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    if not args.skip_peaks:
        peaks = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[name], layout = mm_peak(dtype, args.repeats)
            print(f"torch.mm peak {name}: {peaks[name]:8.1f} GFLOP/s ({layout})")
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            rate = ns_rate(dtype, max(1, args.repeats - 1))
            extra = "" if name == "fp32" or native else f", {rate / peaks['fp32']:.0%} of fp32 peak (fp32 GEMMs)"
            share = rate / peaks[name]
            print(f"Newton-Schulz {name} 1024x4096 x5: {rate:8.1f} GFLOP/s nominal = {share:.0%} of {name} peak{extra}")

    step_ratios(args, native)
    if not args.skip_batching:
        batching_table(args)
    if args.orthogonality:
        orthogonality_table()
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
