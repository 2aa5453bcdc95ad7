"""Muon: momentum, then Newton-Schulz orthogonalization of each matrix update."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from optreg.optim import check_number, is_sharded
from optreg.specs import MAX_COUNT, FieldValueError
from optreg_muon.functional import distributed as D
from optreg_muon.functional import matrix as F
from optreg_muon.functional import sharded as S
from optreg_muon.functional.newton_schulz import PRECONDITIONINGS, resolve_coefficients
from optreg_muon.optim._orthogonal import Orthogonal

__all__ = ["Muon", "check_newton_schulz_options"]

#: ``ns_dtype`` values: the precision of the Newton-Schulz iteration.
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
NS_BACKENDS = ("auto", "torch", "triton")
#: ``sharded_ns`` values: whole matrices split between the ranks (exact), or each rank's row shard (approximate).
SHARDED_NS = ("exact", "local")

#: One parameter's orthogonalized update: this rank's rows of it (the whole update when ``rows`` is None), the
#: rows ``(start, stop)`` of dim 0 it holds, and the shapes of the whole matrix's row blocks (for ``adjust_lr``).
Part = tuple[torch.Tensor, "tuple[int, int] | None", list[tuple[int, int]]]


def block_shapes(
    shape: Sequence[int], flatten: bool, split_sizes: Sequence[int], num_heads: int
) -> list[tuple[int, int]]:
    """The shapes of the row blocks orthogonalized separately in a whole tensor of ``shape`` (no data touched)."""
    view = F.matrix_view(torch.empty(tuple(shape), device="meta"), flatten)
    return [tuple(b.shape[-2:]) for b in F.row_blocks(view, split_sizes, num_heads)]  # type: ignore[misc]


def row_ratios(rule: str, shapes: Sequence[tuple[int, int]], num_heads: int, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """``adjust_lr``'s ratio per row of the whole matrix view, ``(rows, 1)``: each row block by its own shape."""
    ratios = [torch.full((r,), F.adjust_lr_ratio(rule, r, c), dtype=dtype, device=device) for r, c in shapes]
    return torch.cat([t.repeat(int(num_heads or 1)) for t in ratios]).reshape(-1, 1)


def check_newton_schulz_options(options: dict[str, Any]) -> None:
    """Reject Newton-Schulz options no step could use (``ns_dtype``, ``ns_backend``, ``preconditioning``, the
    coefficients for ``ns_steps``, ``adjust_lr``): shared by every optimizer that orthogonalizes with it."""
    if options["ns_dtype"] not in NS_DTYPES:
        raise ValueError(f"ns_dtype must be one of {tuple(NS_DTYPES)}, got {options['ns_dtype']!r}")
    if options["ns_backend"] not in NS_BACKENDS:
        raise ValueError(f"ns_backend must be one of {NS_BACKENDS}, got {options['ns_backend']!r}")
    if options["preconditioning"] not in PRECONDITIONINGS:
        raise ValueError(f"preconditioning must be one of {PRECONDITIONINGS}, got {options['preconditioning']!r}")
    if options["ns_backend"] == "triton" and options["ns_dtype"] == "float64":
        raise ValueError("the Triton Newton-Schulz kernels run in bfloat16 or float32; ns_dtype = 'float64' "
                         "needs ns_backend 'torch' or 'auto'")
    resolve_coefficients(options["ns_coefficients"], options["ns_steps"])
    F.adjust_lr_ratio(options["adjust_lr"], 1, 1)


class Muon(Orthogonal):
    """Muon: momentum, then Newton-Schulz orthogonalization of each matrix update (Jordan et al. 2024).

    Per step, for every matrix parameter ``p`` (its matrix view) with gradient ``g`` (``-g`` with
    ``maximize``)::

        buf <- lerp(buf, g, 1 - momentum)              # = momentum * buf + (1 - momentum) * g
        u   <- lerp(g, buf, momentum)  if nesterov  else  buf
        O   <- NewtonSchulz(u)                          # per row block, ns_steps quintic steps:
                                                        #   X <- a X + b (X X^T) X + c (X X^T)^2 X
        p   <- p * (1 - lr * weight_decay * mask)       # mask = 1, or (O * p > 0) with cautious_wd
        p   <- p - lr * ratio(rows, cols) * O           # ratio: adjust_lr (spectral_norm: sqrt(max(1, rows/cols)))

    The other parameters (vectors; embeddings and the head when routed by role) take AdamW or Lion
    (``non_matrix_algorithm``) with the ``adam_*`` options.

    Reference: K. Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks", and
    ``torch.optim.Muon``. The momentum is an EMA as in torch (the blog post's ``buf <- momentum * buf + g``
    differs by the factor ``1 - momentum``, which the Frobenius normalisation removes). With torch's
    defaults (``"muon"`` coefficients, 5 steps, ``preconditioning = "frobenius"``,
    ``adjust_lr = "spectral_norm"``, ``ns_backend = "torch"``) the update equals torch's: bit for bit per
    matrix (``foreach=False``, or a shape no other matrix of the group shares), within bf16 rounding where
    same-shaped matrices are batched. Beyond torch: 3-D+ params (flattened to ``(shape[0], rest)``, or a
    batch of matrices with ``flatten = False``), row blocks (``split_sizes``, ``num_heads``: a fused QKV
    orthogonalized per block and head), coefficient presets and per-step coefficients, preconditionings
    (``spectral``, ``aol``, ``schatten``), cautious weight decay, ``ns_dtype`` (``"float64"`` for float64
    models), a Triton kernel, and ``step(step_factor=t)``. ``foreach`` batches same-shaped blocks into one
    Newton-Schulz call: None (the default) where it pays (on CPU small blocks only:
    :func:`~optreg_muon.functional.matrix.batch_blocks`), True at every size; it is not the
    ``torch._foreach_*`` path.
    """

    ALGORITHM = "muon"
    TRANSIENT = ("meshes", "split_stats")

    def _init_transient(self) -> None:
        super()._init_transient()
        #: What this rank did in the last step's matrix update (:class:`optreg_muon.functional.distributed.SplitStats`).
        self.split_stats = D.SplitStats()

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
        sharded_ns: str = "exact",
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
        meshes: Mapping[str, Any] | None = None,
    ) -> None:
        check_number("momentum", momentum, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("ns_steps", ns_steps, ge=1, le=99)
        check_number("eps", eps, gt=0)
        check_number("num_heads", num_heads, ge=1, le=MAX_COUNT)
        for i, size in enumerate(split_sizes):
            check_number(f"split_sizes[{i}]", size, ge=1, le=MAX_COUNT)
        resolve_coefficients(ns_coefficients, ns_steps)  # fail early on bad coefficients
        F.adjust_lr_ratio(adjust_lr, 1, 1)
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
            "sharded_ns": sharded_ns,
        }
        self._extra_defaults(defaults)
        self.split_stats = D.SplitStats()
        super().__init__(
            params,
            defaults=defaults,
            adam_lr=adam_lr,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            non_matrix_algorithm=non_matrix_algorithm,
            foreach=foreach,
            meshes=meshes,
        )

    def _extra_defaults(self, defaults: dict[str, Any]) -> None:
        """Subclasses add their own group options."""

    # -- checks of a matrix group (constructor and add_param_group)

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        split_sizes = tuple(group.get("split_sizes") or ())
        heads = int(group.get("num_heads") or 1)
        if not split_sizes and heads == 1:
            return
        # FieldValueError (a ValueError) names the option, so a spec's error points at it ($.optimizer.split_sizes)
        if p.ndim > 2 and not group["flatten"]:
            raise FieldValueError(
                "flatten", f"split_sizes / num_heads need 2-D or flattened parameters, got shape {tuple(p.shape)}"
            )
        rows = p.shape[0]
        sizes = split_sizes or (rows,)
        if sum(sizes) != rows:
            raise FieldValueError(
                "split_sizes",
                f"{list(split_sizes)} must add up to the {rows} rows of shape {tuple(p.shape)}; split_sizes applies to "
                "every matrix of its param group (set it in a group_overrides entry for the fused weights only)",
            )
        if any(s % heads for s in sizes):
            raise FieldValueError(
                "num_heads", f"each block of {sizes} rows must divide into num_heads={heads} equal heads"
            )

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        if options.get("sharded_ns", "exact") not in SHARDED_NS:
            raise ValueError(f"sharded_ns must be one of {SHARDED_NS}, got {options['sharded_ns']!r}")
        check_newton_schulz_options(options)

    # -- the step

    def step(self, closure: Any = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """One step (see :class:`~optreg.optim.OptregOptimizer`); :attr:`split_stats` then describes it."""
        self.split_stats = D.SplitStats()
        return super().step(closure, step_factor=step_factor)

    def _momentum(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
        take: torch.Tensor | None, sf: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """Update the EMA momentum buffers; return the inputs to orthogonalization."""
        updates = []
        for p, g in zip(params, grads):
            g = F.step_grad(g, sf, group["maximize"])
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            updates.append(
                F.ema_momentum_(state["momentum_buffer"], g, momentum=group["momentum"], nesterov=group["nesterov"],
                                take=take)
            )
        return updates

    def _orthogonalize(
        self, group: dict[str, Any], updates: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, list[tuple[int, int]]]]:
        """Newton-Schulz on every update's matrix view, per row block, same-shaped blocks batched (``foreach``)."""
        return F.orthogonalize(
            updates,
            resolve_coefficients(group["ns_coefficients"], group["ns_steps"]),
            flatten=group["flatten"],
            split_sizes=group.get("split_sizes") or (),
            num_heads=int(group.get("num_heads") or 1),
            batched=self.batch_matrices,
            any_size=self.batch_any_size,
            preconditioning=group["preconditioning"],
            eps=group["eps"],
            dtype=NS_DTYPES[group["ns_dtype"]],
            backend=group["ns_backend"],
        )

    def _orthogonal_parts(self, group: dict[str, Any], updates: list[torch.Tensor]) -> list[Part]:
        """Every update orthogonalized (see ``sharded_ns``): this rank's rows of each, or the whole.

        ``"exact"`` with the strategy's meshes: each whole matrix orthogonalized by one rank
        (:func:`~optreg_muon.functional.distributed.split_orthogonalize`); ``"local"``: a row-sharded
        ``DTensor``'s local rows orthogonalized where they are (per row block). Anything else (no meshes:
        one process or a copied optimizer; tensor-parallel layouts) is gathered whole and computed on every
        rank (:mod:`~optreg_muon.functional.sharded`). All give one process's update but ``"local"``.
        """
        flatten, heads = group["flatten"], int(group.get("num_heads") or 1)
        split_sizes = group.get("split_sizes") or ()
        mode = group.get("sharded_ns", "exact")
        meshes = getattr(self, "meshes", None) or {}
        split = any(m is not None for m in meshes.values())
        stats = self.split_stats
        parts: list[Part | None] = [None] * len(updates)
        exact, local, rest = [], [], []
        for i, u in enumerate(updates):
            layout = D.row_layout(u, meshes.get("replicate")) if split or mode == "local" else None
            if layout is None:
                rest.append(i)
            elif mode == "local" and is_sharded(u) and layout.shard_size > 1:
                local.append((i, layout))
            elif split:
                exact.append((i, layout))
            else:
                rest.append(i)
        dtype = NS_DTYPES[group["ns_dtype"]]
        if exact:

            def compute(wholes: list[torch.Tensor]) -> list[torch.Tensor]:
                return [o.reshape(w.shape) for (o, _), w in zip(self._orthogonalize(group, wholes), wholes)]

            rows = D.split_orthogonalize([updates[i] for i, _ in exact], [lay for _, lay in exact], compute,
                                         out_dtype=dtype, stats=stats)
            for (i, layout), r in zip(exact, rows):
                whole = layout.shard_size == 1  # replicated rows (DDP, HSDP without shards): the whole update
                parts[i] = (r, None if whole else layout.rows,
                            block_shapes(updates[i].shape, flatten, split_sizes, heads))
        if local:
            parts_local = self._local_parts(group, [updates[i] for i, _ in local], [lay for _, lay in local])
            for (i, _), part in zip(local, parts_local):
                parts[i] = part
        if rest:
            wholes = [S.whole(updates[i]) for i in rest]
            start, cpu = time.perf_counter(), time.thread_time()
            orthogonal = self._orthogonalize(group, wholes)
            stats.ns_seconds += time.perf_counter() - start
            stats.ns_cpu_seconds += time.thread_time() - cpu
            stats.total += len(rest)
            stats.computed += len(rest)
            for i, w, (o, shapes) in zip(rest, wholes, orthogonal):
                if is_sharded(updates[i]):
                    local_rows = updates[i].to_local()
                    stats.gather_bytes += (w.numel() - local_rows.numel()) * w.element_size()
                    stats.received_bytes += (w.numel() - local_rows.numel()) * w.element_size()
                # the whole update in the parameter's shape (F.orthogonalize gives one block's batch shape when
                # there is one block: with num_heads, (heads, rows / heads, cols), not the matrix NorMuon normalises)
                parts[i] = (o.reshape(w.shape), None, shapes)
        return parts  # type: ignore[return-value]

    def _local_parts(
        self, group: dict[str, Any], updates: list[torch.Tensor], layouts: list[D.RowLayout]
    ) -> list[Part]:
        """``sharded_ns = "local"``: Newton-Schulz on each rank's own rows (KempnerForge's approximation).

        A 2-D (or flattened) shard is cut where the whole matrix's row blocks (``split_sizes``, heads) cut it
        and each piece orthogonalized; a batch of matrices sharded along its batch dimension
        (``flatten = False``) holds whole matrices, so there it is exact. Same-shaped pieces are batched.
        """
        flatten, heads = group["flatten"], int(group.get("num_heads") or 1)
        split_sizes = tuple(group.get("split_sizes") or ())
        pieces: list[torch.Tensor] = []
        plans = []
        for u, layout in zip(updates, layouts):
            own = u.to_local()
            view = F.matrix_view(own, flatten)
            start, stop = layout.rows
            cuts: list[tuple[int, int]] = []
            if own.numel() and view.ndim == 2:
                bounds, at = [], 0
                for size in split_sizes or (u.shape[0],):
                    for _ in range(heads):
                        bounds.append((at, at + size // heads))
                        at += size // heads
                cuts = [(max(a, start) - start, min(b, stop) - start)
                        for a, b in bounds if min(b, stop) > max(a, start)]
            elif own.numel():
                cuts = [(0, view.shape[0])]
            plans.append((own, view, cuts, layout.rows, block_shapes(u.shape, flatten, split_sizes, heads)))
            pieces.extend(view[a:b] for a, b in cuts)
        dtype = NS_DTYPES[group["ns_dtype"]]
        start_time, cpu = time.perf_counter(), time.thread_time()
        solo = {**group, "split_sizes": (), "num_heads": 1}
        orthogonal = iter(self._orthogonalize(solo, pieces)) if pieces else iter(())
        self.split_stats.ns_seconds += time.perf_counter() - start_time
        self.split_stats.ns_cpu_seconds += time.thread_time() - cpu
        self.split_stats.total += len(updates)
        self.split_stats.computed += len(updates)
        out: list[Part] = []
        for own, view, cuts, rows, shapes in plans:
            done = [next(orthogonal)[0] for _ in cuts]
            if done:
                result = torch.cat(done) if view.ndim == 2 else done[0]
            else:
                result = torch.zeros(view.shape, dtype=dtype, device=own.device)
            out.append((result.reshape(own.shape), rows, shapes))
        return out

    def _step_units(self, group: dict[str, Any], params: list[torch.Tensor]) -> list[list[int]]:
        """The params (indices) whose momentum, Newton-Schulz and update run before the next unit's.

        Under a strategy's meshes, or with sharded params: one unit (the split between ranks needs every
        matrix). Otherwise a param none of whose blocks is batched (``foreach = false``, or, unless ``foreach =
        true``, blocks too large to batch on this device: :func:`~optreg_muon.functional.matrix.batch_blocks`)
        is a unit of its own, so its momentum copy and orthogonalized update are freed before the next param's
        are made (on CPU keeping every matrix's alive at once cost page faults, about 4% of a step of six
        1024x1024 matrices); the others form one unit, whose blocks are batched by shape.
        """
        meshes = getattr(self, "meshes", None) or {}
        if any(m is not None for m in meshes.values()) or any(is_sharded(p) for p in params):
            return [list(range(len(params)))]
        flatten, heads = group["flatten"], int(group.get("num_heads") or 1)
        split_sizes = tuple(group.get("split_sizes") or ())
        alone, together = [], []
        for i, p in enumerate(params):
            # the blocks' shapes, as F.row_blocks cuts the matrix view (no tensor made: steps may run under
            # a dispatch mode that records every op)
            cols = math.prod(p.shape[1:]) if flatten or p.ndim == 2 else p.shape[-1]
            rows = p.shape[0] if flatten or p.ndim == 2 else p.shape[-2]
            shapes = [(size // heads, cols) for size in split_sizes or (rows,)]
            if self.batch_matrices and (self.batch_any_size or any(F.batch_blocks(s, p.device) for s in shapes)):
                together.append(i)
            else:
                alone.append([i])
        return alone + ([together] if together else [])

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        for unit in self._step_units(group, params):
            unit_params = [params[i] for i in unit]
            updates = self._momentum(group, unit_params, [grads[i] for i in unit], take, sf)
            self._apply_parts(group, unit_params, self._orthogonal_parts(group, updates), take)

    def _apply_parts(
        self, group: dict[str, Any], params: list[torch.Tensor], parts: list[Part], take: torch.Tensor | None
    ) -> None:
        """``p <- p * (1 - lr * wd [* mask]) - lr * ratio * O`` for every param and its orthogonalized part."""
        lr = float(group["lr"])
        heads = int(group.get("num_heads") or 1)
        for p, (update, rows, shapes) in zip(params, parts):
            if len(set(shapes)) == 1:
                alpha = lr * F.adjust_lr_ratio(group["adjust_lr"], *shapes[0])
            else:  # unequal blocks: each row by its own block's rule (only 2-D or flattened views have blocks)
                ratios = row_ratios(group["adjust_lr"], shapes, heads, F.work_dtype(p.dtype), update.device)
                if rows is not None:
                    ratios = ratios[rows[0]:rows[1]]
                update, alpha = (update.reshape(ratios.shape[0], -1) * ratios).reshape(update.shape), lr
            applied = S.like(update, p) if rows is None else D.to_layout(update, p)
            F.decay_and_apply_(
                p, applied, lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], take=take,
            )
