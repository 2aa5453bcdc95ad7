"""Step time of the Adam family against torch's AdamW, measured in the same run.

For ~10M and ~50M fp32 params (1024x1024 matrices) it prints, for every algorithm and path:
the step time, its ratio to ``torch.optim.AdamW(fused=True)`` and to
``torch.optim.AdamW(foreach=True)`` (fused AdamW steps alternately with each candidate, so both see
the same load on a shared machine), the effective bandwidth (bytes the algorithm must touch per
param, divided by the step time) and the ratio normalised by bytes (time per byte relative to
torch's fused AdamW). Targets (issue 3): our ``adamw`` at most 1.1x fused AdamW; every other
algorithm within 1.5x of it after normalising by bytes.

Where the time goes: ``fixed ms`` is the same step on as many 64-element tensors (Python work,
dispatch, compiled-call guards: what does not grow with size); the rest of ``ms/step`` is the
kernels. ``adamw[bf16 nearest]`` (breakdown only) stores the bf16 state by round-to-nearest:
beside ``adamw[bf16 state]`` it splits the cost of the bf16 conversions (no native bf16 on
AVX2 CPUs) from the stochastic rounding's hashing.

    python bench/optim_step.py                      # everything (compiles: a few minutes)
    python bench/optim_step.py --sizes 10 --no-compile
    python bench/optim_step.py --only ademamix,madam --profile   # where the eager time goes

No timed assertions: on a shared machine only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch
from optreg_adam import AdamW
from optreg_adam import functional as F
from optreg_adam import optim as A

WIDTH = 1024
MEDIAN = False
F32 = 4

#: name -> (constructor, bytes touched per param per step in fp32 runs)
#: AdamW: read p, g, m, v; write p, m, v = 7 x 4 bytes. AdEMAMix adds the slow EMA (r/w).
#: bf16 state: m and v are 2 bytes each: 3x4 (p r/w, g) + 4x2 = 20 bytes. "bf16 nearest" is a breakdown
#: row (see _Bf16Nearest), not an offered option.
ALGORITHMS: dict[str, tuple[Callable[..., torch.optim.Optimizer], int]] = {
    "adamw": (lambda ps, **kw: AdamW(ps, lr=1e-3, **kw), 7 * F32),
    "adamw[bf16 state]": (lambda ps, **kw: AdamW(ps, lr=1e-3, state_dtype="bfloat16", **kw), 3 * F32 + 4 * 2),
    "adamw[bf16 nearest]": (lambda ps, **kw: _Bf16Nearest(ps, compile=kw.get("compile", False)), 3 * F32 + 4 * 2),
    "ademamix": (lambda ps, **kw: A.AdEMAMix(ps, lr=1e-3, alpha_warmup=1000, beta3_warmup=1000, **kw), 9 * F32),
    "simplified_ademamix": (lambda ps, **kw: A.SimplifiedAdEMAMix(ps, lr=1e-4, **kw), 7 * F32),
    "adopt": (lambda ps, **kw: A.ADOPT(ps, lr=1e-3, **kw), 7 * F32),
    "laprop": (lambda ps, **kw: A.LaProp(ps, lr=1e-3, **kw), 7 * F32),
    "acprop": (lambda ps, **kw: A.ACProp(ps, lr=1e-3, **kw), 7 * F32),
    "madam": (lambda ps, **kw: A.Madam(ps, lr=1e-3, **kw), 7 * F32),
}


class _Bf16Nearest(torch.optim.Optimizer):
    """Breakdown only: AdamW with bf16 state stored by round-to-nearest (no random bits).

    Not offered to users (round-to-nearest stalls ``v``); timing it beside the real
    stochastic-rounding path separates the cost of the bf16 conversions from the hashing.
    """

    def __init__(self, params, compile: bool = False) -> None:
        super().__init__(params, {"lr": 1e-3})
        self.impl = "compiled" if compile else "single"

    @torch.no_grad()
    def step(self) -> None:
        ps = [p for g in self.param_groups for p in g["params"]]
        for p in ps:
            if not self.state[p]:
                self.state[p] = {"m": torch.zeros_like(p, dtype=torch.bfloat16),
                                 "v": torch.zeros_like(p, dtype=torch.bfloat16), "step": torch.zeros(())}
        st = [self.state[p] for p in ps]
        F.adamw(ps, [p.grad for p in ps], [s["m"] for s in st], [s["v"] for s in st], [],
                [s["step"] for s in st], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
                impl=self.impl, stochastic_rounding=False)


def make_params(millions: int) -> list[torch.Tensor]:
    n = max(1, round(millions * 1e6 / (WIDTH * WIDTH)))
    g = torch.Generator().manual_seed(0)
    params = []
    for _ in range(n):
        p = torch.randn(WIDTH, WIDTH, generator=g)
        p.grad = torch.randn(WIDTH, WIDTH, generator=g) * 1e-2
        params.append(p)
    return params


def time_steps(opt: torch.optim.Optimizer, steps: int, warmup: int) -> float:
    """Best (minimum) seconds per ``opt.step()`` after ``warmup`` steps (which include any compilation).

    On a shared machine other processes only ever add time, so the minimum is the best estimate
    of the step's own cost; the median is printed too when ``--median`` is given.
    """
    with torch.no_grad():
        for _ in range(warmup):
            opt.step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - start)
    return statistics.median(times) if MEDIAN else min(times)


def time_interleaved(
    base: torch.optim.Optimizer, opt: torch.optim.Optimizer, steps: int, warmup: int
) -> tuple[float, float]:
    """Best step times of ``base`` and ``opt`` measured alternately, so both see the same machine load."""
    with torch.no_grad():
        for _ in range(warmup):
            opt.step()
        base.step()
        tb, to = [], []
        for _ in range(steps):
            start = time.perf_counter()
            base.step()
            tb.append(time.perf_counter() - start)
            start = time.perf_counter()
            opt.step()
            to.append(time.perf_counter() - start)
    pick = statistics.median if MEDIAN else min
    return pick(tb), pick(to)


def fixed_cost(make: Callable[..., torch.optim.Optimizer], count: int, steps: int, **kw) -> float:
    """Seconds per step on ``count`` tensors of 64 elements: the per-step cost that does not grow with size.

    (Python work, dispatch, compiled-call guards; the rest of a step's time is the kernels themselves.)
    """
    tiny = []
    for _ in range(count):
        p = torch.randn(64)
        p.grad = torch.randn(64)
        tiny.append(p)
    return time_steps(make(tiny, **kw), steps, 3)


def fresh(params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p in params:
        q = p.detach().clone()
        q.grad = p.grad
        out.append(q)
    return out


def profile_step(name: str, opt: torch.optim.Optimizer) -> None:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        opt.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            opt.step()
    print(f"\n-- where the time of one eager {name} step goes (top ops by self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


class Baseline:
    """torch's AdamW times of one size, and the table row of a measurement against them."""

    def __init__(self, numel: int, fused: float, foreach: float) -> None:
        self.numel, self.fused, self.foreach = numel, fused, foreach

    def row(self, name: str, path: str, seconds: float, nbytes: int, fused_now: float | None = None,
            fixed: float | None = None) -> None:
        """One table line; ``fused_now`` is fused AdamW timed alongside (interleaved), else the baseline;
        ``fixed`` is the step's size-independent cost (see :func:`fixed_cost`)."""
        fused = fused_now or self.fused
        foreach = self.foreach * fused / self.fused
        per_byte = seconds / (nbytes * self.numel)
        fused_per_byte = fused / (7 * F32 * self.numel)
        print(f"{name:<22}{path:<10}{seconds * 1e3:>9.2f}{fused * 1e3:>9.2f}{seconds / fused:>9.2f}"
              f"{seconds / foreach:>10.2f}{nbytes * self.numel / seconds / 1e9:>7.1f}"
              f"{per_byte / fused_per_byte:>10.2f}{'-' if fixed is None else f'{fixed * 1e3:.2f}':>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50", help="millions of params, comma separated (default 10,50)")
    parser.add_argument("--only", default="", help="comma list of algorithm names (default: all)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration (median is shown)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd paths")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager per-tensor paths")
    parser.add_argument("--profile", action="store_true", help="profile one eager step of each algorithm")
    parser.add_argument("--median", action="store_true", help="report the median step time instead of the best")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global MEDIAN
    MEDIAN = args.median
    names = [n for n in ALGORITHMS if not args.only or n in args.only.split(",") or n.split("[")[0] in args.only]
    stat = "median" if args.median else "best"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {stat} of {args.steps} steps")
    for millions in (int(s) for s in args.sizes.split(",")):
        params = make_params(millions)
        numel = sum(p.numel() for p in params)
        print(f"\n== {numel / 1e6:.1f}M fp32 params in {len(params)} tensors of {WIDTH}x{WIDTH}")
        fused_opt = torch.optim.AdamW(fresh(params), lr=1e-3, fused=True)
        base_fused = time_steps(fused_opt, args.steps, 3)
        base_foreach = time_steps(torch.optim.AdamW(fresh(params), lr=1e-3, foreach=True), args.steps, 3)
        base_loop = time_steps(torch.optim.AdamW(fresh(params), lr=1e-3, foreach=False), args.steps, 3)
        base = Baseline(numel, base_fused, base_foreach)
        header = (f"{'algorithm':<22}{'path':<10}{'ms/step':>9}{'fused ms':>9}{'x fused':>9}{'x foreach':>10}"
                  f"{'GB/s':>7}{'x fused/B':>10}{'fixed ms':>9}")
        print(header)
        print("-" * len(header))
        row = base.row
        row("torch AdamW", "fused", base_fused, 7 * F32,
            fixed=fixed_cost(lambda ps: torch.optim.AdamW(ps, fused=True), len(params), args.steps))
        row("torch AdamW", "foreach", base_foreach, 7 * F32)
        row("torch AdamW", "loop", base_loop, 7 * F32)
        for name in names:
            make, nbytes = ALGORITHMS[name]
            paths: list[tuple[str, dict]] = []
            if name == "adamw":
                paths.append(("default", {}))
            if not args.no_eager:
                paths.append(("eager", {"foreach": False} if name == "adamw" else {}))
            if not args.no_compile:
                kw = {"compile": True, "foreach": False} if name == "adamw" else {"compile": True}
                paths.append(("compiled", kw))
            for path, kw in paths:
                opt = make(fresh(params), **kw)
                fused_now, seconds = time_interleaved(fused_opt, opt, args.steps, 3 if kw.get("compile") else 2)
                # default: tiny tensors would take another path than the fused kernel, so no figure
                fixed = None if path == "default" else fixed_cost(make, len(params), args.steps, **kw)
                row(name, path, seconds, nbytes, fused_now, fixed)
                if args.profile and path == "eager":
                    profile_step(name, opt)
                del opt
                gc.collect()
        del params
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
