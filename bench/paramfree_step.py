"""Step time of the learning-rate-free optimizers, eager and compiled, against torch's fused AdamW per byte touched.

    python bench/paramfree_step.py [--params 10x1024x1024] [--steps 15] [--repeat 1] [--only prodigy ...]
                                   [--threads N] [--ref] [--cold]

Every optimizer steps its own copy of the same fp32 parameters (default: ten 1024x1024 matrices, issue 17's
layout) with fixed gradients and a fixed loss (MoMo needs one), as ``optreg bench`` does: per name, an eager
(``compile = false``) and a compiled (``compile = true``) optimizer, each step taken right after a step of
``torch.optim.AdamW(fused=True)`` on its own copy, so both see the same machine load. Printed per optimizer
and path:

* ``ms``: median step time;
* ``x fused``: the median over those pairs of step / fused AdamW's step;
* ``per byte``: ``x fused`` times fused AdamW's bytes touched over the optimizer's, with ``optreg bench``'s
  count: ``2 x params + grads + 2 x state`` (state from the spec's declared layout; fused AdamW: 28 bytes
  per fp32 param). 1.0 means as bandwidth-efficient as fused AdamW;
* ``first s``: wall time of the first step (state creation; compiled: the compilation too; ``--cold``
  disables inductor's on-disk caches so it is a first compile, not a cache hit);
* with ``--ref``: the reference package's time over the eager path's (prodigyopt, dadaptation,
  dog-optimizer, mechanic-pytorch), where installed.

With ``--repeat N`` every name is measured N times and the run whose fused AdamW steps were fastest (the
one least disturbed by other processes) is printed, with the first step of the first run (the compile). On
a shared 2-core machine a process holding a core stalls every OpenMP parallel region (fused AdamW's and the
compiled kernels' alike) for milliseconds, so single runs can be off by several times.

Ratios come from this run only: compare them, not the absolute times, across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

SPECS: dict[str, dict[str, Any]] = {
    "prodigy": {"type": "prodigy"},
    "dadapt_adamw": {"type": "dadapt_adamw"},
    "dadapt_sgd": {"type": "dadapt_sgd"},
    "dadapt_lion": {"type": "dadapt_lion"},
    "dog": {"type": "dog"},
    "dowg": {"type": "dowg"},
    "cocob": {"type": "cocob"},
    "mechanic(sgd)": {"type": "mechanic", "inner": {"type": "sgd", "lr": 1.0}},
    "momo": {"type": "momo"},
    "momo_adam": {"type": "momo_adam"},
}


def _reference(name: str) -> Callable[[list[Any]], Any] | None:
    """A constructor of the reference package's optimizer, or None when it is not installed."""
    import torch

    try:
        if name == "prodigy":
            import prodigyopt

            return lambda ps: prodigyopt.Prodigy(ps)
        if name.startswith("dadapt_"):
            import dadaptation

            cls = {"dadapt_adamw": dadaptation.DAdaptAdam, "dadapt_sgd": dadaptation.DAdaptSGD,
                   "dadapt_lion": dadaptation.DAdaptLion}[name]
            return (lambda ps: cls(ps, decouple=True)) if name == "dadapt_adamw" else cls
        if name == "dog":
            import dog

            return lambda ps: dog.DoG(ps)
        if name == "mechanic(sgd)":
            import mechanic_pytorch

            return lambda ps: mechanic_pytorch.mechanize(torch.optim.SGD)(ps, lr=1.0)
    except ImportError:
        return None
    return None


def _layout(text: str) -> list[tuple[int, ...]]:
    """Shapes from ``COUNTxD1[xD2...]`` terms joined by ``+`` (``optreg bench --params``)."""
    shapes: list[tuple[int, ...]] = []
    for term in text.split("+"):
        count, *dims = (int(x) for x in term.split("x"))
        shapes += [tuple(dims)] * count
    return shapes


def _copy(master: list[Any]) -> list[Any]:
    out = []
    for p in master:
        q = p.detach().clone()
        q.grad = p.grad.clone()
        out.append(q)
    return out


def _build(spec: dict[str, Any], params: list[Any], compile: bool) -> Any:
    """The optimizer of ``spec`` on ``params`` with ``compile`` set: the spec's option, or the constructor's
    (MoMo, MoMo-Adam and Mechanic have it on the class only)."""
    import attrs

    import optreg

    registry = optreg.get_registry()
    if "compile" in attrs.fields_dict(registry.spec_class("optimizer", spec["type"])):
        return optreg.build_optimizer({**spec, "compile": compile}, params)
    optimizer = optreg.build_optimizer(spec, params)
    optimizer.compile = compile
    return optimizer


def _has_compile(spec: dict[str, Any]) -> bool:
    """Whether the optimizer of ``spec`` has a compiled path (a ``compile`` option, in the spec or the class)."""
    import attrs

    import optreg

    registry = optreg.get_registry()
    if "compile" in attrs.fields_dict(registry.spec_class("optimizer", spec["type"])):
        return True
    return hasattr(optreg.build_optimizer(spec, [_tiny()]), "compile")


def _tiny() -> Any:
    import torch

    return torch.zeros(2, requires_grad=True)


def _touched(spec: dict[str, Any], params: list[Any]) -> int:
    """Bytes a step touches, ``optreg bench``'s count: params r/w, grads r, the declared state r/w."""
    import optreg
    from optreg.memory import estimate_state

    param_bytes = sum(p.numel() * p.element_size() for p in params)
    state = estimate_state(optreg.get_registry().optimizer_spec(spec), params).total_bytes
    return 3 * param_bytes + 2 * state


def _timed(optimizer: Any, closure: Callable[[], Any]) -> float:
    start = time.perf_counter()
    optimizer.step(closure)
    return time.perf_counter() - start


def measure(name: str, master: list[Any], steps: int, ref: bool) -> dict[str, Any]:
    """Time ``name``'s eager and compiled paths (and its reference) against fused AdamW, alternating."""
    import torch

    spec = SPECS[name]
    loss = torch.tensor(1.0)
    closure = lambda: loss  # noqa: E731 - MoMo needs the loss; every optimizer here takes a closure
    base = torch.optim.AdamW(_copy(master), lr=1e-3, fused=True)
    paths: dict[str, Any] = {}
    first: dict[str, float] = {}
    builds: list[tuple[str, Callable[[list[Any]], Any]]] = [("eager", lambda ps: _build(spec, ps, False))]
    if _has_compile(spec):
        builds.append(("compiled", lambda ps: _build(spec, ps, True)))
    make_ref = _reference(name) if ref else None
    if make_ref is not None:
        builds.append(("ref", make_ref))
    for path, make in builds:
        with contextlib.redirect_stdout(io.StringIO()):
            paths[path] = make(_copy(master))
        first[path] = _timed(paths[path], closure)
        for _ in range(3):  # warm-up: lazy state, a graph for a second call pattern
            paths[path].step(closure)
    for _ in range(3):
        base.step(closure)
    ratios: dict[str, list[float]] = {path: [] for path in paths}
    times: dict[str, list[float]] = {path: [] for path in paths}
    base_times: list[float] = []
    for _ in range(steps):
        for path, optimizer in paths.items():
            tb = _timed(base, closure)
            tc = _timed(optimizer, closure)
            base_times.append(tb)
            times[path].append(tc)
            ratios[path].append(tc / tb)
    fused_touched = 7 * sum(p.numel() * p.element_size() for p in master)
    touched = _touched(spec, master)
    out: dict[str, Any] = {"name": name, "fused_ms": statistics.median(base_times) * 1e3, "touched": touched}
    for path in paths:
        ratio = statistics.median(ratios[path])
        out[path] = {"ms": statistics.median(times[path]) * 1e3, "x_fused": ratio,
                     "per_byte": ratio * fused_touched / touched, "first_s": first[path]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="10x1024x1024", help="COUNTxD1[xD2...] terms joined by '+'")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=1, help="runs per name; the least disturbed one is printed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="names to run (default: all)")
    parser.add_argument("--ref", action="store_true", help="time the reference packages too, where installed")
    parser.add_argument("--cold", action="store_true", help="no inductor caches: the first step compiles afresh")
    args = parser.parse_args()
    if args.cold:
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    master = []
    for shape in _layout(args.params):
        p = torch.randn(shape, generator=g) * 0.02
        p.grad = torch.randn(shape, generator=g) * 1e-2
        master.append(p)
    numel = sum(p.numel() for p in master)
    caches = ", inductor caches off" if args.cold else ""
    print(f"{args.params}: {numel / 1e6:.1f}M fp32 params, {torch.get_num_threads()} threads, torch {torch.__version__}"
          f"{caches}; median of {args.steps} steps, each after a fused AdamW step")
    header = (f"{'optimizer':14s} {'fused ms':>8s} | {'eager ms':>8s} {'x fused':>7s} {'per byte':>8s} | "
              f"{'comp. ms':>8s} {'x fused':>7s} {'per byte':>8s} {'first s':>7s} | {'ref/eager':>9s}")
    print(header)
    for name in SPECS:
        if args.only and name not in args.only:
            continue
        runs = [measure(name, master, args.steps, args.ref) for _ in range(max(1, args.repeat))]
        r = min(runs, key=lambda run: run["fused_ms"])
        for path in ("eager", "compiled", "ref"):
            if path in r:
                r[path]["first_s"] = runs[0][path]["first_s"]
        eager, comp = r["eager"], r.get("compiled")
        line = f"{name:14s} {r['fused_ms']:8.2f} | "
        line += f"{eager['ms']:8.2f} {eager['x_fused']:7.2f} {eager['per_byte']:8.2f} | "
        if comp:
            line += f"{comp['ms']:8.2f} {comp['x_fused']:7.2f} {comp['per_byte']:8.2f} {comp['first_s']:7.1f} | "
        else:
            line += f"{'(no compiled path)':>34s} | "
        line += f"{r['ref']['ms'] / eager['ms']:9.2f}" if "ref" in r else f"{'-':>9s}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
