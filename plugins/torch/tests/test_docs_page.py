"""docs/torch.md (in the optreg repository) and this plugin's README stay true: every name is on the page,
the names that need a closure are said to, and every TOML spec shown validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from optreg_torch.specs import ALL_SPECS

import optreg

HERE = Path(__file__).resolve().parent
PAGES = [HERE.parent / "README.md", HERE.parents[2] / "docs" / "torch.md"]


def _page(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout (the suite runs outside the repository)")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_name_and_alias_is_on_the_page(path: Path) -> None:
    text = _page(path)
    for cls in ALL_SPECS:
        for name in (cls.TYPE, *cls.ALIASES):
            assert f"`{name}`" in text, f"{path.name} does not name `{name}`"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_spec_examples_validate(path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _page(path), re.S)
    assert blocks
    registry = optreg.Registry()
    for block in blocks:
        registry.parse_spec(block, file=str(path))


def test_the_page_says_which_names_need_a_closure() -> None:
    text = _page(PAGES[1])
    needing = [cls.TYPE for cls in ALL_SPECS if getattr(cls, "STEP_INPUT", "gradients") == "closure"]
    assert needing == ["lbfgs"]
    section = text.split("### Which names need a closure")[1].split("\n### ")[0]
    for name in needing:
        assert f"`{name}`" in section
    row = next(line for line in text.splitlines() if line.startswith("| `lbfgs`"))
    assert "**yes**" in row
