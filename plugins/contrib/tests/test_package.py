"""The package seen from Python: lazy exports, no torch on import, constructor checks in the spec's words."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

NAMES = ["DPSGD", "GaLore", "MADGRAD", "SAM", "Sophia", "SplitComplex", "per_sample_grads"]


def test_importing_the_package_imports_no_torch_and_exports_lazily() -> None:
    code = ("import sys, optreg_contrib as c; before = 'torch' in sys.modules; n = len(c.ALL_SPECS); "
            "cls = c.SAM; print(before, 'torch' in sys.modules, cls.__module__, n)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "optreg_contrib.optim.sam", "6"]


@pytest.mark.parametrize("name", NAMES)
def test_every_class_is_exported(name: str) -> None:
    import optreg_contrib
    import optreg_contrib.optim

    assert getattr(optreg_contrib, name) is getattr(optreg_contrib.optim, name)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda ps: __import__("optreg_contrib").MADGRAD(ps, momentum=1.0), r"momentum must be in \[0, 1\)"),
        (lambda ps: __import__("optreg_contrib").Sophia(ps, update_interval=0), r"update_interval must be in \[1, "),
        (lambda ps: __import__("optreg_contrib").Sophia(ps, distribution="uniform"), "rademacher"),
        (lambda ps: __import__("optreg_contrib").DPSGD(ps, l2_norm_clip=0.0), "l2_norm_clip must be > 0"),
        (lambda ps: __import__("optreg_contrib").DPSGD(ps, nesterov=True), "momentum > 0"),
        (lambda ps: __import__("optreg_contrib").SAM(torch.optim.SGD(ps, lr=0.1), rho=0.0), "rho must be > 0"),
        (lambda ps: __import__("optreg_contrib").GaLore(ps, lambda g: torch.optim.SGD(g, lr=0.1), rank=0),
         r"rank must be in \[1, "),
    ],
)
def test_constructor_checks_use_the_spec_words(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build([nn.Parameter(torch.zeros(3, 2))])
