"""Small reference models: for ``optreg groups --model``, the demo and the conformance kit.

Their parameter names follow the conventions of real trainers (``tok_emb``,
``blocks.0.attn.qkv``, ``ln_f``, ``lm_head``) so role detection is exercised
on realistic FQNs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["MODELS", "TinyMLP", "TinyTransformer", "make_model", "spec_model"]


class TinyMLP(nn.Module):
    """A two-hidden-layer MLP with a LayerNorm and a classifier head."""

    def __init__(self, d_in: int = 8, d_hidden: int = 16, d_out: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.norm = nn.LayerNorm(d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.head = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.norm(self.fc1(x)))
        return self.head(torch.tanh(self.fc2(x)))


class Block(nn.Module):
    """A pre-norm transformer block with fused QKV attention and a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn_qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, 4 * d_model)
        self.mlp_out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.attn_qkv(self.ln_1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_out(nn.functional.gelu(self.mlp_in(self.ln_2(x))))


class TinyTransformer(nn.Module):
    """A character-level GPT-style language model (token + position embeddings, untied head)."""

    def __init__(
        self, vocab_size: int = 96, d_model: int = 32, n_layers: int = 2, n_heads: int = 2, max_len: int = 64
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Parameter(torch.zeros(max_len, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.pos_emb, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx) + self.pos_emb[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": TinyMLP, "transformer": TinyTransformer}


def make_model(name: str) -> nn.Module:
    """A built-in model by name, or ``package.module:factory`` for your own (called with no arguments).

    The module is imported as ``python -m`` would: the current directory comes first on the path, so
    ``--model mymodels:mlp`` finds ``./mymodels.py``. Every problem (no such module or factory, a factory
    that fails or returns no ``nn.Module``) is a ``ValueError`` that says what to fix.
    """
    if name in MODELS:
        return MODELS[name]()
    if ":" not in name:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)} or module:factory "
                         "(a function returning an nn.Module, e.g. mymodels:build for ./mymodels.py)")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {name!r} must be module:factory, e.g. mymodels:build")
    module = _import_model_module(module_name, name)
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ValueError(
                f"model {name!r}: module {module_name!r} ({getattr(module, '__file__', None) or 'built-in'}) has no "
                f"{attr!r}; its callables: {', '.join(public) or '(none)'}"
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"model {name!r}: {attr!r} is a {type(factory).__name__}, not a function returning a model")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code: its error, said in one line
        raise ValueError(f"model {name!r}: calling {attr}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r}: {attr}() returned {type(model).__name__}, not an nn.Module")
    return model


def _import_model_module(module_name: str, name: str) -> Any:
    """Import ``module_name`` with the current directory first on ``sys.path`` (as ``python -m`` has it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ValueError(
                f"model {name!r}: no module named {exc.name!r} in the current directory ({cwd}) or the installed "
                f"packages; run from the directory that holds {module_name.replace('.', '/')}.py, or install it"
            ) from None
        raise ValueError(f"model {name!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module: its error, said in one line
        raise ValueError(f"model {name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def spec_model(spec: Any, name: str | None = None) -> tuple[nn.Module, str]:
    """The model to build ``spec`` against, and what it is: ``name`` when given (``--model``), else the model a
    plugin table of the spec trains (``[train] task``: a table with ``make_model()``), else the transformer.

    ``optreg validate``, ``optreg groups`` and ``optreg lr`` all take this rule, so they show what a run
    would build.
    """
    if name is not None:
        return make_model(name), name
    for table_name in sorted({*spec.tables, *spec.table_classes}):
        table = getattr(spec, table_name)
        make = getattr(table, "make_model", None)
        if callable(make):
            model = make()
            if isinstance(model, nn.Module):
                task = getattr(table, "task", None)
                return model, f"the model of [{table_name}]" + (f" task {task!r}" if task else "")
    return make_model("transformer"), "transformer (the spec names no model)"
