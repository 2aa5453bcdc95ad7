"""Property-based fuzzing of specs (hypothesis): the conformance kit's ``test_fuzz_specs`` and ``bench/fuzz_specs.py``.

Inputs are generated from each spec class's own fields and types: valid values within the declared
bounds, values at and just beyond the bounds, huge integers, wrong types, unknown keys, wrong and
missing nested tables; and TOML text (a valid spec dumped with ``dump_spec``) with characters
inserted, deleted or replaced, lines duplicated or dropped, numbers swapped for odd ones.

The properties, for every input:

1. **Parsing raises only** :class:`~optreg.SpecError`, and no ``SpecError`` hides a crash: an exception
   that is not a validation error (``KeyError``, ``IndexError``, ``AttributeError``, ``RecursionError``...)
   turned into an error message by the converter's catch-alls fails the property as if it had escaped.
   Validators reject values with ``ValueError`` / ``TypeError`` (their documented way), so those count
   as validation errors.
2. **A spec that parses builds and steps, or raises SpecError**: an optimizer is built on the kit's tiny
   MLP and takes one step with a closure (a ``"per_sample"`` optimizer, or a case that skips the kit's
   ``closure`` check, is only built); a schedule is built on a dummy optimizer and stepped; a parallelism
   spec is only parsed (it needs processes). Any other exception fails: a ``ValueError`` or
   ``RuntimeError`` from the optimizer's constructor or step means the spec accepted a value the
   optimizer refuses, and the user gets no path to the field. Specs holding an integer larger than
   :data:`BUILD_INT_LIMIT` are parsed and round-tripped but not built: a huge window or rank would
   allocate before anything could refuse it (bounding those sizes is the specs' job, checked elsewhere).
3. **Dump/parse round-trips**: ``dump_spec(spec)`` parses back to an equal spec, and dumps the same text.

Run more examples with ``OPTREG_FUZZ_EXAMPLES=500`` (the kit's check) or ``bench/fuzz_specs.py``.
Requires hypothesis (in optreg's ``test`` extra); the kit's check is skipped with a message without it.
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from optreg.errors import SpecError
from optreg.specs import OptimizerSpec, ParallelismSpec, SchedulerSpec, Spec, spec_fields

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from optreg.registry import Registry
    from optreg.runspec import RunSpec

__all__ = [
    "BUILD_INT_LIMIT",
    "EXAMPLES_ENV",
    "FuzzFailure",
    "check_source",
    "fuzz_case",
    "fuzz_examples",
    "fuzz_spec",
    "run_table",
    "spec_tables",
    "toml_texts",
    "unexpected_errors",
]

#: Environment variable: examples per fuzzed name in the kit's check (default :data:`DEFAULT_EXAMPLES`).
EXAMPLES_ENV = "OPTREG_FUZZ_EXAMPLES"
#: Examples per case in the kit's check: a bounded, deterministic run that takes well under a second.
DEFAULT_EXAMPLES = 8
#: A spec holding an integer above this is parsed and round-tripped, not built (sizes allocate).
BUILD_INT_LIMIT = 64
#: The optimizer every scheduler / parallelism spec is parsed beside (the core's own, by qualified name).
BESIDE_OPTIMIZER = {"type": "optreg:sgd"}

_KIND_BASES: dict[str, type] = {"optimizer": OptimizerSpec, "scheduler": SchedulerSpec, "parallelism": ParallelismSpec}
#: Names never generated as a nested table (``[optimizer.inner]``): they step sparse gradients only, and the
#: fuzzer's MLP gives dense ones (a wrapper around them is for an embedding's own optimizer).
NESTED_SKIP = frozenset({"sparse_adam"})
#: Huge and odd integers a size field may receive in a hostile spec (parsed, never built).
_HUGE_INTS = (2**31, 2**53, 2**63 - 1, -(2**63))


class FuzzFailure(AssertionError):
    """A fuzzed spec broke a property: the message says which, and holds the input (TOML or table)."""


def fuzz_examples(default: int = DEFAULT_EXAMPLES) -> int:
    """Examples per fuzzed name: ``OPTREG_FUZZ_EXAMPLES`` when set (a positive integer), else ``default``."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{EXAMPLES_ENV}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise ValueError(f"{EXAMPLES_ENV}={raw!r}: expected a positive integer")
    return value


# ---------------------------------------------------------------- crashes disguised as messages

#: Exceptions the converter may legitimately turn into a message: its own errors and validators' rejections.
def _expected_types() -> tuple[type, ...]:
    from cattrs.errors import BaseValidationError, ForbiddenExtraKeysError

    from optreg.convert import StructureErrors
    from optreg.specs import FieldValueError, FieldValueErrors

    return (StructureErrors, BaseValidationError, ForbiddenExtraKeysError, FieldValueError, FieldValueErrors,
            ValueError, TypeError)


@contextlib.contextmanager
def unexpected_errors() -> Iterator[list[BaseException]]:
    """Collect the exceptions the converter turns into messages that are not validation errors.

    Every exception the strict converter catches becomes ``(path, message)`` pairs through
    ``optreg.convert.flatten_errors``; this wraps it for the duration, so a ``KeyError`` raised in a
    spec's ``__attrs_post_init__`` (which a user would see as ``$.optimizer: 'lr'``) is seen for what it is.
    """
    import optreg.convert as convert

    original = convert.flatten_errors
    expected = _expected_types()
    found: list[BaseException] = []

    def recording(exc: BaseException, prefix: tuple = ()) -> list:
        if not isinstance(exc, expected):
            found.append(exc)
        return original(exc, prefix)

    convert.flatten_errors = recording
    try:
        yield found
    finally:
        convert.flatten_errors = original


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


# ---------------------------------------------------------------- strategies


def _st() -> Any:
    from hypothesis import strategies

    return strategies


def _bounds(f: attrs.Attribute | None) -> dict[str, float]:
    return dict(f.metadata.get("bounds", {})) if f is not None else {}


def _int_range(bounds: Mapping[str, float]) -> tuple[int, int]:
    """The valid integers to build with: within the bounds, at most :data:`BUILD_INT_LIMIT` wide."""
    lo = bounds.get("ge", bounds["gt"] + 1 if "gt" in bounds else 0)
    lo = math.ceil(lo)
    hi = bounds.get("le", bounds["lt"] - 1 if "lt" in bounds else lo + BUILD_INT_LIMIT)
    hi = min(math.floor(hi), lo + BUILD_INT_LIMIT, BUILD_INT_LIMIT)
    return int(lo), int(max(hi, lo))


def _float_edges(bounds: Mapping[str, float]) -> list[float]:
    out = [0.0, -0.0, 1e-300, 1e300, -1.0, 1.0]
    for key in ("ge", "gt", "le", "lt"):
        if key in bounds:
            b = float(bounds[key])
            out += [b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf)]
    return out


def valid_values(tp: Any, f: attrs.Attribute | None, registry: Registry, depth: int) -> SearchStrategy:
    """Values of type ``tp`` within ``f``'s declared bounds (small ones for integers: they may size things)."""
    st = _st()
    bounds = _bounds(f)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is bool:
        return st.booleans()
    if tp is float:
        lo = bounds.get("ge", bounds.get("gt"))
        hi = bounds.get("le", bounds.get("lt"))
        if lo is None and hi is None:
            lo, hi = -10.0, 10.0
        elif lo is None:
            lo = min(hi - 10.0, hi)
        elif hi is None:
            hi = max(lo + 10.0, lo)
        return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False,
                         exclude_min="gt" in bounds, exclude_max="lt" in bounds)
    if tp is int:
        lo, hi = _int_range(bounds)
        return st.integers(lo, hi)
    if tp is str:
        return st.text(max_size=8)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        real = [a for a in args if a is not type(None)]
        return st.one_of(*[valid_values(a, f, registry, depth) for a in real])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(valid_values(args[0], f, registry, depth), max_size=3)
        return st.tuples(*[valid_values(a, f, registry, depth) for a in args]).map(list)
    if origin in (list, Sequence, typing.Sequence, frozenset, set):
        return st.lists(valid_values(args[0] if args else int, f, registry, depth), max_size=3)
    if origin in (dict, Mapping, typing.Mapping):
        key_type, value_type = args or (str, int)
        return st.dictionaries(valid_values(key_type, None, registry, depth),
                               valid_values(value_type, None, registry, depth), max_size=2)
    if isinstance(tp, type) and tp in _KIND_BASES.values():
        kind = next(k for k, b in _KIND_BASES.items() if b is tp)
        return nested_tables(registry, kind, depth + 1)
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_table(tp, registry, depth + 1)
    return st.one_of(st.none(), st.integers(0, 3))


def edge_values(tp: Any, f: attrs.Attribute | None) -> SearchStrategy:
    """Values at and beyond ``f``'s bounds, and huge ones (of the right type, for the type that has a size)."""
    st = _st()
    bounds = _bounds(f)
    real = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(real) == 1:
        tp = real[0]
    if tp is float:
        return st.sampled_from(_float_edges(bounds))
    if tp is int:
        edges = [0, -1, 1, *_HUGE_INTS]
        for key, b in bounds.items():
            b = int(b)
            edges += [b - 1, b, b + 1] if key in ("ge", "gt", "le", "lt") else []
        return st.sampled_from(edges)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.one_of(st.just([]), st.lists(edge_values(args[0], f), min_size=1, max_size=64))
        return st.tuples(*[edge_values(a, f) for a in args]).map(list)
    return st.nothing()


def wrong_values(tp: Any) -> SearchStrategy:
    """Values of the wrong type for ``tp``: strings for numbers, numbers for strings, tables for scalars..."""
    st = _st()
    wrong: list[Any] = [True, "1e-3", "", 1.5, 3, float("nan"), float("inf"), [], [1, "a"], {}, {"type": 1}]
    if tp is bool or (typing.get_args(tp) and bool in typing.get_args(tp)):
        wrong = [w for w in wrong if not isinstance(w, bool)] + ["true", 0, 1]
    return st.sampled_from(wrong)


def nested_tables(registry: Registry, kind: str, depth: int) -> SearchStrategy:
    """A nested table naming a registered ``kind`` (``[optimizer.inner]``): plain ones, or generated past depth 0."""
    st = _st()
    names = [n for n in registry.names(kind) if n not in NESTED_SKIP]
    plain = st.sampled_from(names).map(lambda n: {"type": n})
    if depth > 1:
        return plain
    return st.one_of(plain, st.sampled_from(names).flatmap(lambda n: spec_tables(registry, kind, n, depth=depth)))


def _attrs_table(cls: type, registry: Registry, depth: int) -> SearchStrategy:
    from optreg.convert import field_types

    st = _st()
    hints = field_types(cls)

    @st.composite
    def draw_table(draw: Callable) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in spec_fields(cls):
            if f.default is attrs.NOTHING or draw(st.booleans()):
                out[f.name] = draw(valid_values(hints[f.name], f, registry, depth))
        return out

    return draw_table()


#: How a generated table departs from a valid one (most are valid or near it, so they build).
_FLAVORS = ("valid", "valid", "valid", "edge", "edge", "wrong_type", "unknown_key", "missing_type", "unknown_type",
            "not_a_table", "group_overrides")


def spec_tables(
    registry: Registry, kind: str, name: str, *, base: Mapping[str, Any] | None = None, depth: int = 0
) -> SearchStrategy:
    """Tables for the spec class registered as ``name``: generated from its fields and types.

    ``base`` (e.g. a conformance case's spec) is the starting table; each example sets some fields to
    valid values and, per its flavor, one field to an edge or wrong value, adds an unknown key, drops or
    misspells the ``type``, or replaces the table with a scalar.
    """
    from optreg.convert import field_types

    st = _st()
    cls = registry.spec_class(kind, name)
    hints = field_types(cls)
    fields = [f for f in spec_fields(cls) if f.name not in ("group_overrides", "roles")]
    start = dict(base or {"type": name})

    @st.composite
    def draw_table(draw: Callable) -> Any:
        table = dict(start)
        for f in fields:
            if (f.default is attrs.NOTHING and f.name not in table) or draw(st.integers(0, 3)) == 0:
                table[f.name] = draw(valid_values(hints[f.name], f, registry, depth))
        flavor = draw(st.sampled_from(_FLAVORS))
        if flavor in ("edge", "wrong_type") and fields:
            f = draw(st.sampled_from(fields))
            values = edge_values(hints[f.name], f) if flavor == "edge" else wrong_values(hints[f.name])
            table[f.name] = draw(st.one_of(values, wrong_values(hints[f.name])) if flavor == "edge" else values)
        elif flavor == "unknown_key":
            key = draw(st.sampled_from([*(f.name + "x" for f in fields[:3]), "type_", "Lr", "inner", "params", "x"]))
            if key not in {f.name for f in spec_fields(cls)}:
                table[key] = draw(st.one_of(st.integers(0, 3), st.text(max_size=3), st.just({"type": "sgd"})))
        elif flavor == "missing_type":
            table.pop("type", None)
        elif flavor == "unknown_type":
            table["type"] = draw(
                st.sampled_from([name.upper(), name + "_", "", " " + name, 3, ["sgd"], f"nope:{name}"])
            )
        elif flavor == "not_a_table":
            return draw(st.sampled_from([name, 1, 1.5, True, [], [dict(table)]]))
        elif flavor == "group_overrides" and kind == "optimizer":
            table["group_overrides"] = draw(st.sampled_from([
                [{"params": ["fc1.*"], "lr": 0.0}],
                [{"params": ["fc1.*"]}],
                [{"params": []}],
                [{"params": ["no_such_param.*"]}],
                [{"params": ["no_such_param.*"], "strict": False, "weight_decay": 0.0}],
                [{"params": "fc1.*"}],
                [{"lr": 0.1}],
                {"params": ["fc1.*"]},
                [{"params": ["*"], "type": "adamw"}],
            ]))
        return table

    return draw_table()


def run_table(kind: str, table: Any) -> dict[str, Any]:
    """The whole-file mapping that holds ``table`` as its ``kind`` table (beside the core's SGD)."""
    if kind == "optimizer":
        return {"optimizer": table}
    return {"optimizer": dict(BESIDE_OPTIMIZER), kind: table}


_MUTATION_CHARS = "[]{}=\"'.,#\n\t -+_0123456789eExXabc\\\u00e9\u2028\x00\x7f"
_ODD_NUMBERS = ("9007199254740992", "-1", "0", "1e999", "nan", "inf", "-inf", "1_0", "0x10", "1e-400", "00", "1.",
                "true", '"1"', "[]", "{}", "2025-01-01")


def toml_texts(registry: Registry, kind: str, table: Mapping[str, Any], *, max_nesting: int = 8) -> SearchStrategy:
    """TOML text of a valid spec holding ``table``, mutated: characters inserted, deleted and replaced,
    lines duplicated or dropped, a value swapped for an odd one, a value wrapped in ``max_nesting`` arrays."""
    import re

    from optreg.loading import dump_spec

    st = _st()
    text = dump_spec(registry.parse_spec(run_table(kind, dict(table))))
    numbers = [m.span() for m in re.finditer(r"(?<==\s)[-+0-9.eE_]+|true|false", text)]

    def apply(draw: Callable, text: str) -> str:
        op = draw(st.sampled_from(("insert", "delete", "replace", "dup_line", "drop_line", "number", "nest")))
        n = len(text)
        if op == "insert":
            i = draw(st.integers(0, n))
            return text[:i] + draw(st.text(alphabet=_MUTATION_CHARS, min_size=1, max_size=3)) + text[i:]
        if op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            return text[:i] + text[i + draw(st.integers(1, 4)):]
        if op == "replace" and n:
            i = draw(st.integers(0, n - 1))
            return text[:i] + draw(st.sampled_from(_MUTATION_CHARS)) + text[i + 1:]
        lines = text.split("\n")
        if op in ("dup_line", "drop_line"):
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i + 1] = [lines[i], lines[i]] if op == "dup_line" else []
            return "\n".join(lines)
        if op == "number" and numbers:
            start, end = draw(st.sampled_from(numbers))
            return text[:start] + draw(st.sampled_from(_ODD_NUMBERS)) + text[end:]
        if op == "nest" and numbers:
            start, end = draw(st.sampled_from(numbers))
            k = draw(st.integers(1, max_nesting))
            return text[:start] + "[" * k + text[start:end] + "]" * k + text[end:]
        return text

    @st.composite
    def mutated(draw: Callable) -> str:
        out = text
        for _ in range(draw(st.integers(1, 3))):
            out = apply(draw, out)
        return out

    return mutated()


# ---------------------------------------------------------------- properties


def _max_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return abs(value)
    if isinstance(value, Mapping):
        return max((_max_int(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return max((_max_int(v) for v in value), default=0)
    if isinstance(value, Spec) or attrs.has(type(value)):
        return max((_max_int(getattr(value, f.name)) for f in spec_fields(type(value))), default=0)
    return 0


def _shown(source: Any) -> str:
    return source if isinstance(source, str) else repr(source)


def parse(registry: Registry, source: str | Mapping[str, Any]) -> RunSpec | None:
    """Property 1: ``source`` parses, or raises a :class:`SpecError` that hides no crash; ``None`` when rejected."""
    with unexpected_errors() as hidden:
        try:
            run = registry.parse_spec(source)
        except SpecError as exc:
            if hidden:
                raise FuzzFailure(
                    f"parsing raised a SpecError that hides a crash ({_describe(hidden[0])}); the user reads "
                    f"{str(exc)!r}. Input:\n{_shown(source)}"
                ) from hidden[0]
            return None
        except Exception as exc:  # the property: nothing but SpecError
            raise FuzzFailure(f"parsing raised {_describe(exc)}, not a SpecError. Input:\n{_shown(source)}") from exc
    if hidden:
        raise FuzzFailure(f"parsing succeeded but swallowed {_describe(hidden[0])}. Input:\n{_shown(source)}")
    return run


def round_trip(registry: Registry, run: RunSpec, source: Any) -> None:
    """Property 3: ``dump_spec(run)`` parses back to an equal spec and dumps to the same text."""
    from optreg.loading import dump_spec

    try:
        text = dump_spec(run)
        again = registry.parse_spec(text)
        text_again = dump_spec(again)
    except Exception as exc:  # a parsed spec must dump and parse back
        raise FuzzFailure(f"dump/parse of a parsed spec raised {_describe(exc)}. Input:\n{_shown(source)}") from exc
    if again != run:
        raise FuzzFailure(f"dump/parse changed the spec:\n{run!r}\nbecame\n{again!r}\nvia\n{text}")
    if text_again != text:
        raise FuzzFailure(f"dumping the re-parsed spec gave different TOML:\n{text}\nthen\n{text_again}")


def build_and_step(run: RunSpec, kind: str, *, step: bool = True, t_max: int | None = 100) -> None:
    """Property 2: the ``kind`` spec of ``run`` builds (and steps), or raises :class:`SpecError`."""
    import torch

    from optreg.testing.problems import TinyRegression

    if kind == "parallelism":
        return
    torch.manual_seed(0)
    model = TinyRegression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "optimizer":
                optimizer = run.optimizer.build(model)
                if step and run.optimizer.step_input() != "per_sample":

                    def closure() -> torch.Tensor:
                        optimizer.zero_grad(set_to_none=True)
                        loss = model.loss(0)
                        loss.backward()
                        return loss

                    optimizer.step(closure)
            else:
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                scheduler = run.scheduler.build(optimizer, t_max=t_max)
                for _ in range(3):
                    optimizer.step()
                    if run.scheduler.units == "tokens":
                        scheduler.step(tokens=7)
                    else:
                        scheduler.step()
        except SpecError:
            return


def check_source(
    registry: Registry,
    kind: str,
    source: str | Mapping[str, Any],
    *,
    step: bool = True,
    t_max: int | None = 100,
    build: bool = True,
) -> str:
    """All three properties for one input (a whole-file TOML text or mapping); returns what happened.

    ``"rejected"`` (a clean SpecError), ``"parsed"`` (parsed and round-tripped; holds a huge integer, so not
    built, or ``build`` is false) or ``"built"``. Raises :class:`FuzzFailure` when a property fails.
    """
    run = parse(registry, source)
    if run is None:
        return "rejected"
    round_trip(registry, run, source)
    if not build or _max_int(getattr(run, kind)) > BUILD_INT_LIMIT:
        return "parsed"
    try:
        build_and_step(run, kind, step=step, t_max=t_max)
    except Exception as exc:  # the property: a parsed spec builds or raises SpecError
        raise FuzzFailure(
            f"a spec that parsed raised {_describe(exc)} when built/stepped, not a SpecError. Input:\n{_shown(source)}"
        ) from exc
    return "built"


def fuzz_spec(
    registry: Registry,
    kind: str,
    name: str,
    *,
    base: Mapping[str, Any] | None = None,
    examples: int | None = None,
    step: bool = True,
    build: bool = True,
    t_max: int | None = 100,
    seed: int | None = None,
    max_nesting: int = 8,
    search_text_base: bool = False,
) -> dict[str, int]:
    """Fuzz the ``kind`` spec registered as ``name``: generated tables and mutated TOML, ``examples`` of each.

    Deterministic unless ``seed`` is given (then that seed). Returns counts of what happened
    (``rejected`` / ``parsed`` / ``built``). Texts mutate the TOML of ``base`` (or of the bare ``type``);
    when that does not parse, ``search_text_base`` searches generated tables for one that does (slower), else
    only tables are fuzzed. ``step = False`` builds without stepping, ``build = False`` only
    parses and round-trips. Raises :class:`FuzzFailure` (hypothesis reports the smallest
    failing input it found) when a property fails.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    examples = examples if examples is not None else fuzz_examples()
    counts: dict[str, int] = {"rejected": 0, "parsed": 0, "built": 0}
    valid_base = dict(base) if base is not None else None
    if valid_base is None:  # a valid starting table for the text mutations: the defaults, or a generated one
        valid_base = {"type": name}
    tables = spec_tables(registry, kind, name, base=base).map(lambda t: run_table(kind, t))
    try:
        texts = toml_texts(registry, kind, valid_base, max_nesting=max_nesting)
    except SpecError:  # the bare type needs options (a wrapper's inner, a t_max): mutate a generated valid one
        texts = _texts_of_a_valid_table(registry, kind, name, max_nesting) if search_text_base else _st().nothing()
    config = settings(
        max_examples=examples, deadline=None, derandomize=seed is None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=False, phases=(Phase.generate, Phase.shrink),
    )

    def run(source: Any) -> None:
        counts[check_source(registry, kind, source, step=step, t_max=t_max, build=build)] += 1

    @config
    @given(tables)
    def fuzz_tables(source: Any) -> None:
        run(source)

    @config
    @given(texts)
    def fuzz_texts(source: Any) -> None:
        run(source)

    for test in (fuzz_tables, fuzz_texts):
        if seed is not None:
            test = hypothesis_seed(seed)(test)
        if test is fuzz_texts and texts.is_empty:
            continue
        test()
    return counts


def _texts_of_a_valid_table(registry: Registry, kind: str, name: str, max_nesting: int) -> SearchStrategy:
    """:func:`toml_texts` of the first generated table of ``name`` that parses (none: no text mutations)."""
    from hypothesis import find, settings
    from hypothesis.errors import NoSuchExample

    def parses(table: Any) -> bool:
        try:
            registry.parse_spec(run_table(kind, table))
        except Exception:  # noqa: BLE001 - any failure: not a valid starting table (the tables' run reports it)
            return False
        return True

    try:
        table = find(spec_tables(registry, kind, name), parses,
                     settings=settings(max_examples=25, database=None, derandomize=True))
    except NoSuchExample:
        return _st().nothing()
    return toml_texts(registry, kind, table, max_nesting=max_nesting)


def fuzz_case(suite: Any, case: Any) -> dict[str, int]:
    """The kit's ``test_fuzz_specs``: :func:`fuzz_spec` around a conformance case of ``suite``.

    Tables start from the case's spec; an optimizer case that skips the kit's ``closure`` check (it cannot
    step the kit's MLP with a closure) is built, not stepped; a schedule is built with the case's ``t_max``.
    """
    name = str(case.spec.get("type", ""))
    suite._check_provider(name)
    step = "closure" not in dict(getattr(case, "skip", {}))
    t_max = getattr(case, "t_max", None) or 100
    return fuzz_spec(suite.registry, suite.KIND, name, base=case.spec, step=step, t_max=t_max)
