"""Muon, NorMuon and Dion optimizers: orthogonalized updates for matrices, AdamW for everything else.

Each param group has an ``algorithm``: the optimizer's matrix update (``"muon"``,
``"normuon"``, ``"dion"``) or ``"adamw"`` / ``"lion"`` for non-matrix parameters. Groups built
by an optreg spec already carry it (the core routes by parameter role:
embeddings, the output head, biases and norms go to AdamW). Groups passed
directly without one, in the constructor or in ``add_param_group``, are split:
tensors with ``ndim >= 2`` take the matrix update, the rest ``non_matrix_algorithm``
(AdamW or Lion) with ``adam_lr``, ``adam_betas``, ``adam_eps`` and ``adam_weight_decay``
(options the group sets win). A group that names an ``algorithm`` is kept as given;
a non-matrix one takes those ``adam_*`` values for the options it leaves out.

Complex parameters are refused at construction (and by ``add_param_group``): the
orthogonalized update is defined on real matrices (the polar factor of a complex
matrix is not that of its real view, and Dion's QR would be complex), so a complex
model should keep its real and imaginary parts as real parameters.

Matrix shapes: 3-D and larger tensors (conv kernels, stacked experts) are
flattened to ``(shape[0], prod(rest))`` with ``flatten = True``, else treated as
a batch of matrices over the leading dimensions. ``split_sizes`` cuts the rows of
a fused matrix (e.g. QKV) into blocks and ``num_heads`` cuts each block into
equal per-head row blocks; each block is orthogonalized on its own. Blocks of
the same shape (across all parameters of a group) go through one batched
Newton-Schulz call when ``foreach`` is on (the default).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from optreg.optim import OptregOptimizer, gate_grad
from optreg_muon import _non_matrix
from optreg_muon.newton_schulz import PRECONDITIONINGS, newton_schulz, resolve_coefficients

__all__ = ["Dion", "Muon", "NorMuon", "adjust_lr_ratio"]

#: ``ns_dtype`` values: the precision of the Newton-Schulz iteration.
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
_BACKENDS = ("auto", "torch", "triton")


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision of per-matrix arithmetic outside Newton-Schulz: float32, or the param's dtype if wider."""
    return torch.promote_types(dtype, torch.float32)


def adjust_lr_ratio(rule: str, rows: int, cols: int) -> float:
    """The factor on the LR of an orthogonalized ``rows x cols`` update.

    ``spectral_norm``: ``sqrt(max(1, rows/cols))`` (Keller Jordan's rule; torch's
    ``adjust_lr_fn=None``/``"original"``). ``rms_norm`` / ``match_rms_adamw``:
    ``0.2 * sqrt(max(rows, cols))`` so the update RMS matches AdamW's (Liu et al. 2025,
    "Muon is Scalable for LLM Training"). ``none``: 1.
    """
    if rule == "spectral_norm":
        return math.sqrt(max(1.0, rows / cols))
    if rule in ("rms_norm", "match_rms_adamw"):
        return 0.2 * math.sqrt(max(rows, cols))
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown adjust_lr rule {rule!r}")


def _tensor_of(item: Any) -> torch.Tensor:
    return item[1] if isinstance(item, tuple) else item


def _route(group: dict[str, Any], matrix_algorithm: str, non_matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """One param group as the groups the optimizer holds, each with an ``algorithm``.

    A group without one is split by ``ndim``: matrices (``ndim >= 2``) take ``matrix_algorithm``,
    the rest ``non_matrix`` (the ``adam_*`` options and ``non_matrix_algorithm``); options the group
    sets win. A group that names its ``algorithm`` is kept; a non-matrix one gets the ``non_matrix``
    options it leaves out. Members may be tensors or ``(name, tensor)`` pairs.
    """
    members = group["params"]
    if isinstance(members, torch.Tensor):
        members = [members]
    elif isinstance(members, set):
        raise TypeError("param group params must be an ordered collection (a list), not a set: the order of a set "
                        "changes between runs")
    else:
        members = list(members)
    options = {k: v for k, v in group.items() if k != "params"}
    names = options.pop("param_names", None)
    if names is not None:  # names given beside plain tensors: keep each with its tensor through the split
        names = list(names)
        if len(names) != len(members):
            raise ValueError(f"param_names has {len(names)} names for {len(members)} params")
        members = [(n, _tensor_of(m)) for n, m in zip(names, members)]
    for m in members:
        if not isinstance(_tensor_of(m), torch.Tensor):
            raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(_tensor_of(m))}")
    if "algorithm" in options:
        if options["algorithm"] in _non_matrix.NON_MATRIX_ALGORITHMS:
            return [{**{k: v for k, v in non_matrix.items() if k != "algorithm"}, **options, "params": members}]
        return [{**options, "params": members}]
    matrices = [m for m in members if _tensor_of(m).ndim >= 2]
    others = [m for m in members if _tensor_of(m).ndim < 2]
    out = []
    if matrices or not others:
        out.append({**options, "params": matrices, "algorithm": matrix_algorithm})
    if others:
        out.append({**non_matrix, **options, "params": others})
    return out


class _Orthogonal(OptregOptimizer):
    """Shared machinery: routing, the AdamW branch, step_factor gating, matrix views and batched NS."""

    ALGORITHM = ""

    def __init__(
        self,
        params: Iterable[Any],
        *,
        defaults: dict[str, Any],
        adam_lr: float,
        adam_betas: tuple[float, float],
        adam_eps: float,
        adam_weight_decay: float,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
    ) -> None:
        if non_matrix_algorithm not in _non_matrix.NON_MATRIX_ALGORITHMS:
            raise ValueError(
                f"non_matrix_algorithm must be one of {_non_matrix.NON_MATRIX_ALGORITHMS}, got {non_matrix_algorithm!r}"
            )
        for name, value in (("lr", defaults["lr"]), ("adam_lr", adam_lr), ("adam_eps", adam_eps)):
            if not float(value) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not all(0.0 <= b < 1.0 for b in adam_betas):
            raise ValueError(f"adam_betas must be in [0, 1), got {adam_betas}")
        #: Options of the non-matrix update, for groups split by ``ndim`` (here and in ``add_param_group``).
        self.non_matrix_defaults = {"lr": adam_lr, "betas": tuple(adam_betas), "eps": adam_eps,
                                    "weight_decay": adam_weight_decay, "algorithm": non_matrix_algorithm}
        defaults = {"maximize": False, **defaults, "algorithm": self.ALGORITHM, "betas": tuple(adam_betas)}
        self.foreach = foreach
        self.non_matrix_algorithm = non_matrix_algorithm
        if isinstance(params, torch.Tensor):
            params = [params]
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as the constructor does: split by ``ndim`` unless it names its ``algorithm``.

        So ``add_param_group({"params": [layer.weight, layer.bias]})`` sends the weight to the matrix
        update and the bias to ``non_matrix_algorithm`` with the ``adam_*`` options; named
        ``(name, tensor)`` pairs work as in torch. Groups are validated before any is added.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        routed = _route(param_group, self.ALGORITHM, self.non_matrix_defaults)
        for group in routed:
            self._validate_group(group)
        for group in routed:
            super().add_param_group(group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Reject, before it is added, a group this optimizer cannot step (clear message, nothing half-added)."""
        name = type(self).__name__
        options = {**self.defaults, **group}
        algorithm = options["algorithm"]
        if algorithm not in (self.ALGORITHM, *_non_matrix.NON_MATRIX_ALGORITHMS):
            raise ValueError(
                f"{name} param groups take algorithm {self.ALGORITHM!r} or one of "
                f"{_non_matrix.NON_MATRIX_ALGORITHMS}, got {algorithm!r}"
            )
        for member in group["params"]:
            p = _tensor_of(member)
            if p.is_complex():
                raise TypeError(
                    f"{name} does not support complex parameters (got {p.dtype} of shape {tuple(p.shape)}): its "
                    "orthogonalized update is defined for real matrices (the polar factor of a complex matrix is "
                    "not that of its real view); keep the real and imaginary parts as real parameters"
                )
            if algorithm == self.ALGORITHM:
                if p.ndim < 2:
                    raise ValueError(
                        f"{self.ALGORITHM} orthogonalizes matrices; a parameter of shape {tuple(p.shape)} "
                        f"belongs in a group with algorithm one of {_non_matrix.NON_MATRIX_ALGORITHMS}"
                    )
                self._check_shape(p, options)
        if algorithm == self.ALGORITHM:
            self._check_matrix_options(options)

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        """Reject matrix-update options the step could not use (subclasses add theirs)."""

    # -- hooks for subclasses

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Reject a matrix parameter the group's options cannot handle (at construction, not at step)."""

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        raise NotImplementedError

    # -- the step

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            if torch.is_complex(p):  # made complex after construction (add_param_group refuses complex)
                raise TypeError(f"{type(self).__name__} does not support complex parameters")
        grads = [p.grad for p in params]
        if group["algorithm"] in _non_matrix.NON_MATRIX_ALGORITHMS:
            _non_matrix.update(group["algorithm"], params, grads, [self.state[p] for p in params], group, step_factor)
            return
        params = [p for p in params if p.numel() > 0]
        if params:
            self._matrix_step(group, params, [p.grad for p in params], step_factor)

    # -- helpers shared by the matrix updates

    @staticmethod
    def _keep(sf: torch.Tensor | None) -> torch.Tensor | None:
        return None if sf is None else sf != 0

    @staticmethod
    def _commit(dst: torch.Tensor, new: torch.Tensor, keep: torch.Tensor | None) -> None:
        if keep is None:
            if new is not dst:
                dst.copy_(new)
        else:
            dst.copy_(torch.where(keep, new, dst))

    @staticmethod
    def _grad(g: torch.Tensor, sf: torch.Tensor | None, maximize: bool) -> torch.Tensor:
        g = gate_grad(g, sf)
        return -g if maximize else g

    @staticmethod
    def matrix_view(t: torch.Tensor, flatten: bool) -> torch.Tensor:
        """``t`` as a matrix ``(rows, cols)`` or a batch ``(..., rows, cols)`` of matrices."""
        if t.ndim <= 2:
            return t
        return t.reshape(t.shape[0], -1) if flatten else t

    def _orthogonalize(
        self, group: dict[str, Any], updates: Sequence[torch.Tensor], split: bool = True
    ) -> list[tuple[torch.Tensor, list[tuple[int, int]]]]:
        """Newton-Schulz on every update's matrix view; returns (orthogonalized view, block shapes) per update.

        Blocks of the same shape across the updates share one batched call when ``foreach`` is on.
        """
        coefficients = resolve_coefficients(group["ns_coefficients"], group["ns_steps"])
        dtype = _DTYPES[group["ns_dtype"]]
        kwargs = {"preconditioning": group["preconditioning"], "eps": group["eps"], "dtype": dtype,
                      "backend": group["ns_backend"]}
        batched = self.foreach is not False
        plans = []
        queue: dict[tuple, list[tuple[int, int, torch.Tensor]]] = defaultdict(list)
        for i, u in enumerate(updates):
            view = self.matrix_view(u, group["flatten"])
            blocks = self._blocks(view, group) if split else [view]
            plans.append((view, blocks))
            for j, block in enumerate(blocks):
                key = (tuple(block.shape[-2:]), block.dtype, block.device) if batched else (i, j)
                queue[key].append((i, j, block))
        results: dict[tuple[int, int], torch.Tensor] = {}
        for entries in queue.values():
            if len(entries) == 1:
                i, j, block = entries[0]
                results[(i, j)] = newton_schulz(block, coefficients, **kwargs)
                continue
            stacked = torch.cat([b.reshape(-1, *b.shape[-2:]) for _, _, b in entries])
            orth = newton_schulz(stacked, coefficients, **kwargs)
            offset = 0
            for i, j, block in entries:
                count = block.numel() // (block.shape[-2] * block.shape[-1])
                results[(i, j)] = orth[offset : offset + count].reshape(block.shape)
                offset += count
        out = []
        for i, (view, blocks) in enumerate(plans):
            pieces = [results[(i, j)] for j in range(len(blocks))]
            shapes = [tuple(b.shape[-2:]) for b in blocks]
            if len(pieces) == 1:
                out.append((pieces[0], shapes))
            else:
                out.append((torch.cat([p.reshape(-1, view.shape[-1]) for p in pieces]).reshape(view.shape), shapes))
        return out

    @staticmethod
    def _blocks(view: torch.Tensor, group: dict[str, Any]) -> list[torch.Tensor]:
        """The row blocks orthogonalized separately: ``split_sizes``, then ``num_heads`` per block."""
        split_sizes = tuple(group.get("split_sizes") or ())
        heads = int(group.get("num_heads") or 1)
        if not split_sizes and heads == 1:
            return [view]
        if view.ndim != 2:
            raise ValueError("split_sizes / num_heads need 2-D (or flattened) parameters")
        parts = list(view.split(list(split_sizes), dim=0)) if split_sizes else [view]
        if heads > 1:
            parts = [part.reshape(heads, part.shape[0] // heads, part.shape[1]) for part in parts]
        return parts

    @staticmethod
    def _check_blocks(p: torch.Tensor, group: dict[str, Any]) -> None:
        split_sizes = tuple(group.get("split_sizes") or ())
        heads = int(group.get("num_heads") or 1)
        if not split_sizes and heads == 1:
            return
        if p.ndim > 2 and not group["flatten"]:
            raise ValueError(f"split_sizes / num_heads need 2-D or flattened parameters, got shape {tuple(p.shape)}")
        rows = p.shape[0]
        sizes = split_sizes or (rows,)
        if sum(sizes) != rows:
            raise ValueError(f"split_sizes {split_sizes} must add up to the {rows} rows of shape {tuple(p.shape)}")
        if any(s % heads for s in sizes):
            raise ValueError(f"each block of {sizes} rows must divide into num_heads={heads} equal heads")

    def _decay_and_apply(
        self,
        p: torch.Tensor,
        update: torch.Tensor,
        *,
        lr: float,
        alpha: float,
        weight_decay: float,
        cautious: bool,
        keep: torch.Tensor | None,
    ) -> None:
        """``p <- p * (1 - lr * wd [* mask]) - alpha * update`` (torch.optim.Muon's order of operations)."""
        update = update.reshape(p.shape)
        if keep is None:
            if weight_decay != 0:
                if cautious:
                    mask = (update * p > 0).to(p.dtype)
                    p.mul_(1 - lr * weight_decay * mask)
                else:
                    p.mul_(1 - lr * weight_decay)
            p.add_(update, alpha=-alpha)
            return
        new = p
        if weight_decay != 0:
            if cautious:
                mask = (update * p > 0).to(p.dtype)
                new = torch.mul(new, 1 - lr * weight_decay * mask)
            else:
                new = torch.mul(new, 1 - lr * weight_decay)
        new = torch.add(new, update, alpha=-alpha)
        self._commit(p, new, keep)


class Muon(_Orthogonal):
    """Muon: momentum, then Newton-Schulz orthogonalization of each matrix update (Jordan et al. 2024).

    Momentum is an EMA (``buf <- lerp(buf, g, 1 - momentum)``; Nesterov uses
    ``lerp(g, buf, momentum)``), as in ``torch.optim.Muon``. With the defaults of
    ``torch.optim.Muon`` (quintic ``"muon"`` coefficients, 5 steps, Frobenius
    normalisation, ``adjust_lr = "spectral_norm"``, ``ns_backend = "torch"``) the matrix
    update equals torch's: bit for bit per matrix (``foreach=False``, or a shape no other
    matrix of the group shares), within bf16 rounding where same-shaped matrices are batched.
    ``ns_dtype = "float64"`` runs the iteration in float64 (for float64 models).
    """

    ALGORITHM = "muon"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        ns_steps: int = 5,
        ns_coefficients: Any = "muon",
        preconditioning: str = "frobenius",
        adjust_lr: str = "spectral_norm",
        eps: float = 1e-7,
        ns_dtype: str = "bfloat16",
        ns_backend: str = "auto",
        flatten: bool = True,
        split_sizes: Sequence[int] = (),
        num_heads: int = 1,
        maximize: bool = False,
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        resolve_coefficients(ns_coefficients, ns_steps)  # fail early on bad coefficients
        adjust_lr_ratio(adjust_lr, 1, 1)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "cautious_wd": cautious_wd,
            "ns_steps": ns_steps,
            "ns_coefficients": ns_coefficients,
            "preconditioning": preconditioning,
            "adjust_lr": adjust_lr,
            "eps": eps,
            "ns_dtype": ns_dtype,
            "ns_backend": ns_backend,
            "flatten": flatten,
            "split_sizes": tuple(split_sizes),
            "num_heads": num_heads,
            "maximize": maximize,
        }
        self._extra_defaults(defaults)
        super().__init__(
            params,
            defaults=defaults,
            adam_lr=adam_lr,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            non_matrix_algorithm=non_matrix_algorithm,
            foreach=foreach,
        )

    def _extra_defaults(self, defaults: dict[str, Any]) -> None:
        """Subclasses add their own group options."""

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        self._check_blocks(p, group)

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        if options["ns_dtype"] not in _DTYPES:
            raise ValueError(f"ns_dtype must be one of {tuple(_DTYPES)}, got {options['ns_dtype']!r}")
        if options["ns_backend"] not in _BACKENDS:
            raise ValueError(f"ns_backend must be one of {_BACKENDS}, got {options['ns_backend']!r}")
        if options["preconditioning"] not in PRECONDITIONINGS:
            raise ValueError(f"preconditioning must be one of {PRECONDITIONINGS}, got {options['preconditioning']!r}")
        if options["ns_backend"] == "triton" and options["ns_dtype"] == "float64":
            raise ValueError("the Triton Newton-Schulz kernels run in bfloat16 or float32; ns_dtype = 'float64' "
                             "needs ns_backend 'torch' or 'auto'")
        resolve_coefficients(options["ns_coefficients"], options["ns_steps"])
        adjust_lr_ratio(options["adjust_lr"], 1, 1)

    def _momentum(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], keep: Any, sf: Any
    ) -> list[torch.Tensor]:
        """Update the EMA momentum buffers; return the inputs to orthogonalization."""
        momentum = group["momentum"]
        updates = []
        for p, g in zip(params, grads):
            g = self._grad(g, sf, group["maximize"])
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            if keep is None:
                buf.lerp_(g, 1 - momentum)
                new_buf = buf
            else:
                new_buf = torch.lerp(buf, g, 1 - momentum)
                self._commit(buf, new_buf, keep)
            updates.append(g.lerp(new_buf, momentum) if group["nesterov"] else new_buf)
        return updates

    def _matrix_step(self, group, params, grads, sf) -> None:
        keep = self._keep(sf)
        updates = self._momentum(group, params, grads, keep, sf)
        orthogonal = self._orthogonalize(group, updates)
        lr = float(group["lr"])
        for p, (update, shapes) in zip(params, orthogonal):
            alpha = self._scaled_alpha(group, lr, p, update, shapes)
            if isinstance(alpha, torch.Tensor):  # unequal blocks: each block scaled by its own rule
                update, alpha = update * alpha, lr
            self._decay_and_apply(
                p, update, lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], keep=keep,
            )

    def _scaled_alpha(self, group, lr: float, p: torch.Tensor, update: torch.Tensor, shapes) -> Any:
        """``lr * ratio`` when every block has one shape, else a per-row tensor of ratios."""
        rule = group["adjust_lr"]
        if len(set(shapes)) == 1:
            rows, cols = shapes[0]
            return lr * adjust_lr_ratio(rule, rows, cols)
        view = self.matrix_view(update, group["flatten"])
        dtype = _work_dtype(p.dtype)
        ratios = [torch.full((r,), adjust_lr_ratio(rule, r, c), dtype=dtype) for r, c in shapes]
        heads = int(group.get("num_heads") or 1)
        per_row = torch.cat([t.repeat(heads) for t in ratios]).to(device=update.device)
        return per_row.reshape(-1, 1).expand(view.shape).reshape(update.shape)


class NorMuon(Muon):
    """NorMuon: Muon plus neuron-wise second-moment normalisation (Li et al. 2025, arXiv 2510.05491).

    After orthogonalization ``O`` (per row of the matrix view), ``v <- lerp(v,
    mean_cols(O^2), 1 - muon_beta2)`` and ``O <- O / (sqrt(v) + normuon_eps)``,
    rescaled to the Frobenius norm ``sqrt(min(rows, cols))`` of an exactly
    orthogonal matrix. With ``adjust_lr = "match_rms_adamw"`` (the default) the step
    is the paper's ``0.2 * lr * sqrt(rows * cols) / ||O||_F``.
    """

    ALGORITHM = "normuon"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = False,
        muon_beta2: float = 0.95,
        normuon_eps: float = 1e-8,
        adjust_lr: str = "match_rms_adamw",
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= muon_beta2 < 1.0:
            raise ValueError(f"muon_beta2 must be in [0, 1), got {muon_beta2}")
        self._normuon = {"muon_beta2": muon_beta2, "normuon_eps": normuon_eps}
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, adjust_lr=adjust_lr, **kwargs)

    def _extra_defaults(self, defaults: dict[str, Any]) -> None:
        defaults.update(self._normuon)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, then ``second_moment`` back in its own precision (float32 or the param's, if wider).

        torch casts every floating state tensor to its param's dtype, which would round a bf16 param's
        float32 second moment to bf16 (and the next step would mix the two). The tensors are taken from
        the dict torch loads (after the user's load pre-hooks), so nothing is lost.
        """
        loaded: dict[str, Any] = {}

        def capture(optimizer: torch.optim.Optimizer, final: dict[str, Any]) -> None:
            loaded["state_dict"] = final

        handle = self.register_load_state_dict_pre_hook(capture)  # appended: runs after the user's hooks
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()
        final = loaded.get("state_dict", state_dict)
        saved_ids = [i for group in final["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for i, p in zip(saved_ids, params):
            saved = final["state"].get(i, {}).get("second_moment")
            if isinstance(saved, torch.Tensor) and p in self.state:
                self.state[p]["second_moment"] = saved.to(device=p.device, dtype=_work_dtype(p.dtype))

    def _matrix_step(self, group, params, grads, sf) -> None:
        keep = self._keep(sf)
        updates = self._momentum(group, params, grads, keep, sf)
        orthogonal = self._orthogonalize(group, updates)
        lr = float(group["lr"])
        beta2 = group["muon_beta2"]
        for p, (update, _shapes) in zip(params, orthogonal):
            # The second moment and the normalisation run in float32, or in the param's dtype when wider.
            view = self.matrix_view(update, group["flatten"]).to(_work_dtype(p.dtype))
            state = self.state[p]
            if "second_moment" not in state:
                state["second_moment"] = torch.zeros((*view.shape[:-1], 1), dtype=view.dtype, device=p.device)
            v = state["second_moment"]
            new_v = torch.lerp(v, view.square().mean(dim=-1, keepdim=True), 1 - beta2)
            self._commit(v, new_v, keep)
            normed = view / (new_v.sqrt() + group["normuon_eps"])
            rows, cols = view.shape[-2:]
            frob = torch.linalg.matrix_norm(normed, keepdim=True).clamp(min=1e-30)
            normed = normed * (math.sqrt(min(rows, cols)) / frob)
            alpha = lr * adjust_lr_ratio(group["adjust_lr"], rows, cols)
            self._decay_and_apply(
                p, normed.to(p.dtype), lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], keep=keep,
            )


class Dion(_Orthogonal):
    """Dion: low-rank orthonormal updates by power iteration + QR with error feedback (Ahn et al. 2025).

    Per matrix ``X`` (``m x n``) with momentum ``M`` and right basis ``Q`` (``n x r``):
    ``B = M + G``; ``P = orth(B Q)`` (QR), ``R = B^T P`` (``power_iters`` times);
    ``M <- B - (1 - mu) P R^T`` (error feedback); ``Q <- R / ||R||_col``;
    ``X <- X (1 - lr wd) - lr * ratio * P Q^T``. ``r = rank_fraction * min(m, n)``
    rounded up to a multiple of ``rank_multiple_of``. At full rank the error
    feedback leaves exactly ``mu * B`` and, once the power iteration has converged
    to the singular vectors, ``P Q^T`` is the polar factor of ``B``.
    """

    ALGORITHM = "dion"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        mu: float = 0.95,
        rank_fraction: float = 1.0,
        rank_multiple_of: int = 1,
        power_iters: int = 1,
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        adjust_lr: str = "spectral_norm",
        eps: float = 1e-8,
        flatten: bool = True,
        maximize: bool = False,
        seed: int = 0,
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {mu}")
        if not 0.0 < rank_fraction <= 1.0:
            raise ValueError(f"rank_fraction must be in (0, 1], got {rank_fraction}")
        if rank_multiple_of < 1 or power_iters < 1:
            raise ValueError("rank_multiple_of and power_iters must be >= 1")
        adjust_lr_ratio(adjust_lr, 1, 1)
        self.seed = seed
        defaults = {
            "lr": lr,
            "mu": mu,
            "rank_fraction": rank_fraction,
            "rank_multiple_of": rank_multiple_of,
            "power_iters": power_iters,
            "weight_decay": weight_decay,
            "cautious_wd": cautious_wd,
            "adjust_lr": adjust_lr,
            "eps": eps,
            "flatten": flatten,
            "maximize": maximize,
        }
        super().__init__(
            params,
            defaults=defaults,
            adam_lr=adam_lr,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            non_matrix_algorithm=non_matrix_algorithm,
            foreach=foreach,
        )

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.ndim > 2 and not group["flatten"]:
            raise ValueError(f"dion needs 2-D parameters or flatten = true, got shape {tuple(p.shape)}")

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        adjust_lr_ratio(options["adjust_lr"], 1, 1)

    @staticmethod
    def rank(rows: int, cols: int, rank_fraction: float, rank_multiple_of: int) -> int:
        """The low rank ``r`` of a ``rows x cols`` matrix."""
        r = rank_multiple_of * math.ceil(rank_fraction * min(rows, cols) / rank_multiple_of)
        return max(1, min(r, rows, cols))

    def _init_q(self, p: torch.Tensor, cols: int, r: int, state: dict[str, Any]) -> None:
        index = sum(1 for s in self.state.values() if "Q" in s)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        q = torch.randn(cols, r, generator=g, dtype=_work_dtype(p.dtype))
        state["Q"] = (q / q.norm(dim=0, keepdim=True)).to(device=p.device, dtype=p.dtype)

    def _matrix_step(self, group, params, grads, sf) -> None:
        keep = self._keep(sf)
        lr = float(group["lr"])
        mu = group["mu"]
        for p, g in zip(params, grads):
            g = self._grad(g, sf, group["maximize"])
            view_p = self.matrix_view(p, True)
            rows, cols = view_p.shape
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                r = self.rank(rows, cols, group["rank_fraction"], group["rank_multiple_of"])
                self._init_q(p, cols, r, state)
            M = state["momentum_buffer"]
            Q_old = state["Q"]
            work = _work_dtype(p.dtype)  # the QR and the products: float32, or the param's dtype when wider
            B = M.reshape(rows, cols).to(work) + g.reshape(rows, cols).to(work)
            Q_start = Q_old.to(work)
            Q = Q_start
            for _ in range(group["power_iters"]):
                P, _ = torch.linalg.qr(B @ Q)
                R = B.T @ P
                Q = R
            new_M = B - (1 - mu) * (P @ R.T)
            norms = R.norm(dim=0, keepdim=True)
            normalized = R / (norms + group["eps"])
            update = P @ normalized.T
            # A zero column (zero momentum) keeps its old basis vector, else the power iteration would stall at 0.
            new_Q = torch.where(norms > 0, normalized, Q_start)
            self._commit(M, new_M.reshape(M.shape).to(M.dtype), keep)
            self._commit(Q_old, new_Q.to(Q_old.dtype), keep)
            alpha = lr * adjust_lr_ratio(group["adjust_lr"], rows, cols)
            self._decay_and_apply(
                p, update.to(p.dtype), lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], keep=keep,
            )
