"""``optreg bench NAME [NAME ...]``: step time of registered optimizers against torch's fused AdamW.

Every candidate (a registered name, alias, ``"<distribution>:<name>"``, or a spec file whose
``[optimizer]`` table is used with its options) is built as a user gets it, on the same parameters
(``--params`` or ``--size``, fp32, random gradients), and stepped alternately with
``torch.optim.AdamW(fused=True)`` so both see the same machine load. For a spec with a ``compile``
option the eager (``compile = false``) and compiled (``compile = true``) paths are timed as well as
the default; a spec without one is timed eagerly only.

What is measured (and printed by ``--help``):

* ``first step``: wall time of the first ``step()`` on a fresh optimizer (state creation and, on a
  compiled path, the compilation).
* ``step``: median wall time of ``--steps`` later steps; ``x fused`` is the median, over the pairs of a
  candidate step and the fused AdamW step taken right before it, of their ratio.
* ``bytes touched`` per step: params read and written, grads read, every optimizer state tensor read
  and written: ``2 x param bytes + grad bytes + 2 x state bytes``, with the state bytes from the spec's
  declared state layout (``optreg.memory``; the column ``state from`` says ``declared``), or, for an
  optimizer that declares none, measured as the tensors in ``state_dict()`` after the first step
  (fused AdamW: 28 bytes per fp32 param). ``per byte``
  is ``x fused`` times fused AdamW's bytes touched over the candidate's; ``GB/s`` is bytes touched over the step time.
* ``peak``: params + grads + state + the largest extra memory one steady-state step allocates
  (temporaries), read from torch's profiler memory events (torch's CPU allocator, not the process RSS).

No timed assertions anywhere: on a shared machine only the ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import re
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "BenchResult", "Candidate", "Row", "WithClosure", "bench", "candidates", "make_params", "parse_params", "register",
    "size_layout",
]

#: The default layout: the one of issue 17's figures (10.5M fp32 params; a fused AdamW step is about 5 ms).
DEFAULT_PARAMS = "10x1024x1024+10x1024"
#: Width of the matrices ``--size`` lays out.
WIDTH = 1024
BASELINE = "torch.optim.AdamW(fused=True)"
#: Most params ``--params`` may ask for (8 GB of fp32 params, before grads and state).
MAX_NUMEL = 2_000_000_000

MEASURED = (
    "What is measured, per candidate and path (eager, compiled: the spec's `compile` option where it has one): "
    "first step = wall time of the first step() (state creation, and compilation on a compiled path); "
    "step = median wall time over --steps steps, taken alternately with torch.optim.AdamW(fused=True) on its own "
    "copy of the same params so both see the same load; x fused = the median over those pairs of step / fused "
    "AdamW's step; "
    "bytes touched per step = 2 x param bytes (read, write) + grad bytes (read) + 2 x state bytes (read, write), "
    "state bytes from the spec's declared state layout, or, for an optimizer that declares none, measured as "
    "the tensors in its state_dict() after its first step (marked m) (fused AdamW: 28 bytes per fp32 param); "
    "the default path is the spec as a user gets it (compile = \"auto\" decides per param group); "
    "per byte = x fused x (fused AdamW's bytes touched / bytes touched); "
    "GB/s = bytes touched / step; peak = params + grads + state + the most extra memory one step allocates "
    "(temporaries, from torch's profiler memory events: torch's CPU allocator, not the process RSS). "
    "Parameters are fp32 with random gradients; ratios are only comparable within one run."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time registered optimizers against torch's fused AdamW (eager and compiled, per byte touched)",
        description="Time each NAME's optimizer step against torch.optim.AdamW(fused=True) in the same run. "
        + MEASURED,
    )
    p.add_argument(
        "names", nargs="+", metavar="NAME",
        help="a registered optimizer name or alias (third-party plugins included; 'dist:name' picks one of a "
        "clash), or a spec file (TOML) whose [optimizer] table is timed with its options",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--params", metavar="LAYOUT",
        help="the parameters: terms COUNTxD1[xD2...] joined by '+', the first factor of each term is how many "
        f"tensors of shape D1xD2... (default {DEFAULT_PARAMS}: ten 1024x1024 matrices and ten 1024 vectors)",
    )
    size.add_argument(
        "--size", type=float, metavar="M",
        help=f"about M million params: round(M x 10^6 / {WIDTH}^2) {WIDTH}x{WIDTH} matrices and as many "
        f"{WIDTH} vectors",
    )
    p.add_argument("--steps", type=int, default=20, metavar="N",
                   help="timed steps per candidate and path, each alternated with a fused AdamW step (default 20)")
    p.add_argument("--no-compile", action="store_true", help="time the eager path only (no compilation)")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (keys: see docs/cli.md)")
    p.set_defaults(func=cmd_bench)


# ------------------------------------------------------------------ layout


def parse_params(text: str) -> list[tuple[int, ...]]:
    """Shapes from a layout such as ``10x1024x1024+10x1024`` (each term: a count, then the shape)."""
    from optreg.cli import UsageError

    shapes: list[tuple[int, ...]] = []
    numel = 0
    for term in text.replace(" ", "").split("+"):
        if not re.fullmatch(r"\d+(x\d+)+", term):
            raise UsageError(
                f"--params: cannot read {term!r} in {text!r}; write terms COUNTxD1[xD2...] joined by '+', "
                f"e.g. {DEFAULT_PARAMS} (ten 1024x1024 matrices and ten 1024 vectors)"
            )
        count, *dims = (int(x) for x in term.split("x"))
        if count < 1 or min(dims) < 1:
            raise UsageError(f"--params: counts and sizes must be >= 1, got {term!r}")
        numel += count * math.prod(dims)
        if numel > MAX_NUMEL:  # checked before any list is built: '10000000000x1' must not fill the memory
            raise UsageError(f"--params: {text!r} is more than {MAX_NUMEL:,} params, too many to bench")
        shapes += [tuple(dims)] * count
    return shapes


def size_layout(millions: float) -> str:
    """The ``--params`` layout ``--size M`` stands for: 1024-wide matrices plus as many vectors."""
    from optreg.cli import UsageError

    if not (math.isfinite(millions) and 0 < millions <= 2000):
        raise UsageError(f"--size must be > 0 and <= 2000 (millions of params), got {millions:g}")
    n = max(1, round(millions * 1e6 / (WIDTH * WIDTH)))
    return f"{n}x{WIDTH}x{WIDTH}+{n}x{WIDTH}"


# ------------------------------------------------------------------ candidates


@attrs.frozen
class Candidate:
    """One optimizer spec to time, on one path."""

    name: str  # what the user wrote
    type: str  # the registered name
    path: str  # "eager", "compiled" or "default"
    default: bool  # the spec as the user gets it (what `type = "..."` builds)
    spec: Any
    note: str | None = None


def _is_spec_file(registry: Any, name: str) -> bool:
    """A NAME ending in ``.toml``, or an existing file that is no registered name, is a spec file."""
    return name.endswith(".toml") or (registry.lookup("optimizer", name) is None and Path(name).is_file())


def _resolve(registry: Any, name: str) -> Any:
    """The optimizer spec a NAME stands for: a registered name (LookupError with suggestions) or a spec file."""
    from optreg.cli import UsageError

    if _is_spec_file(registry, name):
        spec = registry.load_spec(name)
        if getattr(spec, "optimizer", None) is None:
            raise UsageError(f"{name}: the spec has no [optimizer] table")
        return spec.optimizer
    cls = registry.spec_class("optimizer", name)  # LookupError: "unknown optimizer type ... did you mean"
    try:
        return cls()
    except TypeError:
        required = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
        raise UsageError(
            f"optimizer {name!r} has required options ({', '.join(required)}) with no default: bench a spec file "
            f"whose [optimizer] table sets them (optreg bench my_spec.toml; `optreg show {name}` lists them)"
        ) from None


def candidates(registry: Any, name: str, *, compile: bool = True) -> list[Candidate]:
    """The paths to time for ``name``: its default, and eager/compiled where the spec has a ``compile`` option."""
    from optreg.convert import spec_to_dict

    spec = _resolve(registry, name)
    kind = spec.TYPE
    if _is_spec_file(registry, name):
        name = f"{kind} ({Path(name).name})"
    if "compile" not in attrs.fields_dict(type(spec)):
        return [Candidate(name, kind, "eager", True, spec, note=f"{kind} has no compile option: eager only")]
    from optreg.errors import SpecError

    out: list[Candidate] = []
    default_mode = spec.compile
    for path, value in (("eager", False), ("compiled", True)):
        if path == "compiled" and not compile:
            continue
        data = spec_to_dict(spec)
        data["compile"] = value
        try:
            variant = registry.optimizer_spec(data)
        except SpecError:  # e.g. foreach = true, which no compiled path takes: that path does not exist
            continue
        out.append(Candidate(name, kind, path, variant == spec, variant))
    if not any(c.default for c in out) and compile:
        # A default that is neither (e.g. compile = "auto"): time it as its own path, first.
        out.insert(0, Candidate(name, kind, f"default ({default_mode})", True, spec))
    return out


# ------------------------------------------------------------------ measuring


def make_params(shapes: list[tuple[int, ...]], seed: int = 0) -> list[Any]:
    """What optreg bench steps: seeded random fp32 tensors of ``shapes``, each with a random gradient of scale 1e-2."""
    import torch

    g = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=g)
        p.grad = torch.randn(shape, generator=g) * 1e-2
        params.append(p)
    return params


def _fresh(params: list[Any]) -> list[Any]:
    out = []
    for p in params:
        q = p.detach().clone()
        q.grad = p.grad.clone()  # an optimizer may change its grads in place (maximize, clipping)
        out.append(q)
    return out


def state_bytes(optimizer: Any, params: list[Any]) -> int:
    """Bytes of the distinct tensors in ``optimizer.state_dict()`` (nested wrappers included), params excluded."""
    from optreg.memory import measured_state_bytes

    return measured_state_bytes(optimizer, params)


def declared_state_bytes(spec: Any, params: list[Any]) -> int | None:
    """The state the spec's declared layout gives for ``params`` (``None`` when its optimizer declares none)."""
    from optreg.groups import ParamNamesWarning
    from optreg.memory import estimate_state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParamNamesWarning)
        estimate = estimate_state(spec, params)
    return estimate.total_bytes if estimate.complete else None


def step_temp_bytes(optimizer: Any) -> int:
    """The most memory one ``step()`` allocates beyond what it frees (temporaries), from the profiler."""
    import os
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.step()
    fd, trace = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(trace)
        events = json.loads(Path(trace).read_text(encoding="utf-8")).get("traceEvents", [])
    finally:
        os.unlink(trace)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"
              and e.get("args", {}).get("Device Type", 0) == 0]
    return max([0, *totals])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what the profiler's C++ side prints to file descriptor 2 (``USDT: ... profiler_start``)."""
    import os

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedded interpreter): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@attrs.define
class Row:
    """The measurement of one candidate path (or of the baseline)."""

    name: str
    type: str
    path: str
    default: bool
    first_step_s: float | None = None
    step_s: float | None = None
    baseline_step_s: float | None = None
    ratio: float | None = None
    state_bytes: int | None = None
    #: where ``state_bytes`` comes from: the spec's declared state layout, or measured after the first step
    state_source: str | None = None
    measured_state_bytes: int | None = None
    bytes_touched: int | None = None
    per_byte_ratio: float | None = None
    gb_per_s: float | None = None
    step_temp_bytes: int | None = None
    peak_bytes: int | None = None
    note: str | None = None
    error: str | None = None


@attrs.define
class BenchResult:
    """Everything ``optreg bench`` measured in one run."""

    torch: str
    threads: int
    steps: int
    params: str
    tensors: int
    numel: int
    param_bytes: int
    baseline: Row
    results: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _touched(param_bytes: int, state: int) -> int:
    """Bytes one step reads and writes: params r/w, grads r, state r/w (grads take the params' size)."""
    return 2 * param_bytes + param_bytes + 2 * state


class WithClosure:
    """An optimizer that needs a closure (L-BFGS, SAM), stepped with one that puts the bench's gradients back
    (a copy per param: no forward or backward) and returns a fixed loss."""

    def __init__(self, optimizer: Any, params: list[Any]) -> None:
        import torch

        self.optimizer = optimizer
        self.loss = torch.zeros(())
        self.pairs = [(p, p.grad.clone()) for p in params]

    def closure(self) -> Any:
        for p, g in self.pairs:
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        return self.loss

    def step(self) -> Any:
        return self.optimizer.step(self.closure)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()


def _auto_note(cand: Candidate, optimizer: Any) -> str | None:
    """What ``compile = "auto"`` decides at the bench's size (it compiles a param group from 2**23 elements)."""
    if getattr(cand.spec, "compile", None) != "auto":
        return None
    from optreg.compiling import AUTO_COMPILE_NUMEL, compile_available

    groups = getattr(optimizer, "param_groups", None) or []
    sizes = ", ".join(f"{sum(p.numel() for p in g['params']):,}" for g in groups)
    where = "where a C++ compiler is available" if compile_available() else "(no C++ compiler here: eager)"
    return (f'compile = "auto" compiles a param group of {AUTO_COMPILE_NUMEL:,} elements or more {where}; '
            f"{cand.type}'s groups here hold {sizes} elements")


def _timed_step(optimizer: Any) -> float:
    start = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start


def bench(names: list[str], *, params: str = DEFAULT_PARAMS, steps: int = 20, compile: bool = True,
          registry: Any = None, progress: Any = None) -> BenchResult:
    """Time every name's paths against fused AdamW (see the module docstring for what is measured)."""
    import torch

    import optreg
    from optreg.cli import UsageError

    if steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    registry = registry or optreg.get_registry()
    shapes = parse_params(params)
    todo = [c for name in names for c in candidates(registry, name, compile=compile)]  # every name checked first
    master = make_params(shapes)
    numel = sum(p.numel() for p in master)
    param_bytes = sum(p.numel() * p.element_size() for p in master)
    say = progress or (lambda message: None)

    with torch.no_grad():
        say(f"baseline {BASELINE}")
        base_params = _fresh(master)
        base = torch.optim.AdamW(base_params, lr=1e-3, fused=True)
        first = _timed_step(base)
        base_state = state_bytes(base, base_params)
        base_times: list[float] = []
        results = []
        for cand in todo:
            say(f"{cand.name} {cand.path}")
            row = Row(cand.name, cand.type, cand.path, cand.default, note=cand.note)
            results.append(row)
            cand_params = _fresh(master)
            try:
                opt = cand.spec.build(cand_params)
                row.note = row.note or _auto_note(cand, opt)
                try:
                    row.first_step_s = _timed_step(opt)
                except Exception as exc:  # one that needs a closure (L-BFGS, SAM) gets a cheap one
                    if "closure" not in str(exc).lower():
                        raise
                    opt = WithClosure(opt, cand_params)
                    row.first_step_s = _timed_step(opt)
                    row.note = (f"{cand.type} needs a closure: timed with one that copies the gradients back and "
                                "returns a fixed loss (no forward or backward timed; the copies are)")
                row.measured_state_bytes = state_bytes(opt, cand_params)
                declared = declared_state_bytes(cand.spec, cand_params)
                row.state_bytes = row.measured_state_bytes if declared is None else declared
                row.state_source = "measured" if declared is None else "declared"
                for _ in range(3 if cand.path != "eager" else 1):  # warm up: recompiles, lazy state
                    opt.step()
                base.step()
                tb, tc = [], []
                for _ in range(steps):
                    tb.append(_timed_step(base))
                    tc.append(_timed_step(opt))
                row.step_temp_bytes = step_temp_bytes(opt)
            except Exception as exc:  # noqa: BLE001 - one candidate's failure is its row, not the run's end
                row.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                continue
            finally:
                opt = None
                gc.collect()
            base_times += tb
            row.step_s = statistics.median(tc)
            row.baseline_step_s = statistics.median(tb)
            # The median of the per-pair ratios: each pair ran at the same moment, under the same load.
            row.ratio = statistics.median(c / b for c, b in zip(tc, tb))
            row.bytes_touched = _touched(param_bytes, row.state_bytes)
            row.per_byte_ratio = row.ratio * _touched(param_bytes, base_state) / row.bytes_touched
            row.gb_per_s = row.bytes_touched / row.step_s / 1e9
            row.peak_bytes = 2 * param_bytes + row.state_bytes + row.step_temp_bytes
        if not base_times:  # every candidate failed: still time the baseline
            base_times = [_timed_step(base) for _ in range(steps)]
        base_row = Row(BASELINE, "torch_adamw_fused", "fused", False, first_step_s=first,
                       step_s=statistics.median(base_times), ratio=1.0, state_bytes=base_state,
                       bytes_touched=_touched(param_bytes, base_state), per_byte_ratio=1.0,
                       step_temp_bytes=step_temp_bytes(base))
        base_row.baseline_step_s = base_row.step_s
        base_row.gb_per_s = base_row.bytes_touched / base_row.step_s / 1e9
        base_row.peak_bytes = 2 * param_bytes + base_state + base_row.step_temp_bytes
    return BenchResult(torch=torch.__version__, threads=torch.get_num_threads(), steps=steps, params=params,
                       tensors=len(shapes), numel=numel, param_bytes=param_bytes, baseline=base_row, results=results)


# ------------------------------------------------------------------ output


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_table(result: BenchResult) -> None:
    """The results as a rich table, the baseline first."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    if not console.is_terminal:  # logs and pipes: wide enough for the table (rich would use 80 columns)
        console = Console(soft_wrap=False, width=160)
    print(f"torch {result.torch}, {result.threads} threads; {result.params}: {result.numel:,} fp32 params in "
          f"{result.tensors} tensors; median of {result.steps} steps, each alternated with a {BASELINE} step")
    table = Table()
    for col, justify in (("optimizer", "left"), ("path", "left"), ("first step ms", "right"), ("step ms", "right"),
                         ("x fused", "right"), ("state MiB", "right"), ("touched MiB", "right"),
                         ("per byte", "right"), ("GB/s", "right"), ("peak MiB", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "optimizer")
    notes = []
    for row in [result.baseline, *result.results]:
        path = row.path + (" *" if row.default else "")
        label = "torch AdamW" if row is result.baseline else row.name
        if row.error:
            table.add_row(label, path, "[red]failed[/red]", *[""] * 7)
            continue
        state = _mb(row.state_bytes) + ("" if row.state_source != "measured" else " m")
        table.add_row(label, path, _ms(row.first_step_s), _ms(row.step_s), _x(row.ratio), state,
                      _mb(row.bytes_touched), _x(row.per_byte_ratio),
                      "-" if row.gb_per_s is None else f"{row.gb_per_s:.1f}", _mb(row.peak_bytes))
        if row.note and row.note not in notes:
            notes.append(row.note)
    console.print(table)
    print("* the path a user gets by default. x fused and per byte: over fused AdamW's step measured alongside; "
          "touched = 2 x params + grads + 2 x state (see optreg bench --help); state from the optimizer's "
          "declared layout, or measured after the first step where marked m (no layout declared)")
    for note in notes:
        print(f"note: {note}")


def cmd_bench(args: argparse.Namespace) -> int:
    from optreg_train.commands import plain_warnings

    with plain_warnings():
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    from optreg.cli import UsageError

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    layout = size_layout(args.size) if args.size is not None else (args.params or DEFAULT_PARAMS)

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            print(f"bench: {message}", file=sys.stderr, flush=True)

    result = bench(args.names, params=layout, steps=args.steps, compile=not args.no_compile, progress=progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_table(result)
    failed = [r for r in result.results if r.error]
    for row in failed:  # the table says "failed"; the reason, in full, here
        print(f"optreg: error: bench {row.name} ({row.path}): {row.error}", file=sys.stderr)
    return 1 if failed else 0
