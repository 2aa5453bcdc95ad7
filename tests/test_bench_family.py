"""bench/family_step.py: a family's registered optimizers timed through ``optreg bench``, one markdown row each.

No timed assertions: a tiny layout, one step, eager only; only the shape of the output is checked.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import optreg
from optreg.cli import UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--params", "2x64x32+2x32", "--steps", "1", "--no-compile"]


@pytest.fixture(scope="module")
def family_step() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("family_step", ROOT / "bench" / "family_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["family_step"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("family_step", None)


def _registered(distribution: str) -> list[str]:
    """The optimizer names the distribution's plugins register (canonical names: no aliases)."""
    registry = optreg.get_registry()
    return [name for p in registry.plugins if p.ok and p.distribution == distribution
            for name in p.provides["optimizer"]]


def _markdown_rows(out: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize(("family", "distribution"), [("sign", "optreg-sign"), ("optreg-skipstep", "optreg-skipstep")])
def test_markdown_has_one_row_per_registered_optimizer(family_step, capsys, family, distribution):
    assert family_step.main([family, *TINY, "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "torch.optim.AdamW(fused=True)" in out and "2x64x32+2x32" in out  # the header line
    rows = _markdown_rows(out)
    # a wrapper's row names its inner optimizer: skip_step(adamw)
    names = [row[0].strip("`").split("(")[0] for row in rows]
    expected = _registered(distribution)
    assert expected and sorted(names) == sorted(expected)
    for row in rows:
        assert row[3] not in ("-", "failed"), row  # every optimizer has an eager per-byte figure
        assert row[4] == "-"  # --no-compile: no compiled path
    if distribution == "optreg-skipstep":
        assert "over inner" in out
        over_inner = {row[0].strip("`"): row[-1] for row in rows}
        assert over_inner["noop"] == "-"
        for name in ("skip_step_adamw", "skip_step_lion"):
            assert over_inner[name] != "-", over_inner


def test_families(family_step):
    registry = optreg.get_registry()
    assert family_step.resolve_family(registry, "all") == list(family_step.FAMILIES)
    assert family_step.resolve_family(registry, "sign") == ["optreg-sign"]
    assert family_step.resolve_family(registry, "optreg_schedulefree") == ["optreg-schedulefree"]
    with pytest.raises(UsageError, match="unknown family 'nosuch'"):
        family_step.resolve_family(registry, "nosuch")
    assert family_step.family_names(registry, "optreg-sign") == _registered("optreg-sign")
    assert family_step.inner_name(registry, registry.spec_class("optimizer", "skip_step_lion")) == "lion"
