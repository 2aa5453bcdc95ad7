"""``optreg train`` steps every optimizer the way its spec's ``step_input()`` asks (issue 18): a closure that
re-runs forward and backward for SAM, Sophia and L-BFGS, per-example gradients for DP-SGD."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import optreg_train.loop as loop
import pytest
import tomli_w
import torch

import optreg
from optreg.cli import main

QUIET = ["--no-progress", "--no-plots"]
TRAIN = {"task": "mlp", "steps": 6, "eval_interval": 3, "batch_size": 16}
SPECS = {
    "sam": {"type": "sam", "rho": 0.05, "inner": {"type": "adamw", "lr": 0.01}},
    "sophia": {"type": "sophia", "lr": 0.01, "update_interval": 2},
    "lbfgs": {"type": "lbfgs", "lr": 0.5, "max_iter": 4, "history_size": 5},
    "dpsgd": {"type": "dpsgd", "lr": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 0.5, "seed": 0},
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(SPECS))
def test_optreg_train_runs_each_optimizer_that_needs_a_closure(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps({"optimizer": SPECS[name], "train": TRAIN}))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), *QUIET]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == TRAIN["steps"] and all(math.isfinite(v) for v in losses)


def test_a_train_step_of_sam_is_the_two_pass_step_on_the_steps_batch() -> None:
    """The loop's closure re-evaluates the gradient: SAM around SGD moves by the gradient at the perturbed
    point (a loop that handed over the already computed loss would step with the unperturbed one). Same ops
    in the same order as the optimizer, so float32 tolerance of one step."""
    rho, lr = 0.5, 0.1
    spec = optreg.parse_spec({"optimizer": {"type": "sam", "rho": rho, "inner": {"type": "sgd", "lr": lr}},
                              "train": TRAIN})
    run = loop.prepare_run(spec)
    model = copy.deepcopy(run.model)
    x, y = loop._local_batch(run, torch.Generator().manual_seed(7))
    params = list(model.parameters())
    grads = torch.autograd.grad(run.task.loss(model, x, y), params)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g, alpha=rho / (float(norm) + 1e-12))
    perturbed = torch.autograd.grad(run.task.loss(model, x, y), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(g, alpha=rho / (float(norm) + 1e-12))
        want = [p - lr * g for p, g in zip(params, perturbed)]
        stale = [p - lr * g for p, g in zip(params, grads)]
    loop._train_step(run, torch.Generator().manual_seed(7))
    got = list(run.model.parameters())
    for g, w in zip(got, want):
        torch.testing.assert_close(g.detach(), w, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(w, s) for w, s in zip(want, stale)), "the perturbation changed nothing"


def test_per_example_and_closure_optimizers_refuse_options_the_loop_cannot_honour(tmp_path: Path) -> None:
    cases = [
        ({"type": "dpsgd", "seed": 0}, {"grad_clip": 1.0}, "$.train.grad_clip", "each example"),
        ({"type": "sam", "inner": {"type": "sgd"}}, {"autocast": "float16"}, "$.train.autocast", "GradScaler"),
        ({"type": "dpsgd", "seed": 0}, {}, "$.parallelism.type", "one process"),
    ]
    for optimizer, train, where, why in cases:
        path = tmp_path / "bad.toml"
        table = {"optimizer": optimizer, "train": {**TRAIN, **train}}
        if where == "$.parallelism.type":
            table["parallelism"] = {"type": "ddp"}
        path.write_text(tomli_w.dumps(table))
        with pytest.raises(optreg.SpecError) as info:
            loop.prepare_run(optreg.load_spec(path))
        assert info.value.path == where and why in str(info.value), str(info.value)
