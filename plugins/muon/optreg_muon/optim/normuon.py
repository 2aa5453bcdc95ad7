"""NorMuon: Muon plus neuron-wise (per-row) second-moment normalisation of the orthogonalized update."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.optim import check_number, commit_, is_sharded
from optreg_muon.functional import distributed as D
from optreg_muon.functional import matrix as F
from optreg_muon.functional import sharded as S
from optreg_muon.optim.muon import Muon

__all__ = ["NorMuon"]


class NorMuon(Muon):
    """NorMuon: Muon plus neuron-wise second-moment normalisation (Li et al. 2025, arXiv 2510.05491).

    Per step, for every matrix parameter ``p`` (its matrix view, ``rows x cols``) with gradient ``g``
    (``-g`` with ``maximize``)::

        buf <- lerp(buf, g, 1 - momentum)
        u   <- lerp(g, buf, momentum)  if nesterov  else  buf
        O   <- NewtonSchulz(u)                                    # as Muon
        v   <- lerp(v, mean_cols(O * O), 1 - muon_beta2)          # one entry per row (neuron)
        O   <- O / (sqrt(v) + normuon_eps)
        O   <- O * sqrt(min(rows, cols)) / ||O||_F                # the norm of an orthogonal matrix
        p   <- p * (1 - lr * weight_decay * mask)                 # mask = 1, or (O * p > 0) with cautious_wd
        p   <- p - lr * ratio(rows, cols) * O

    With the default ``adjust_lr = "match_rms_adamw"`` (``ratio = 0.2 * sqrt(max(rows, cols))``) the step is
    the paper's ``0.2 * lr * sqrt(rows * cols) / ||O||_F`` (Algorithm 1); ``nesterov`` defaults to False as
    in the paper. The non-matrix parameters take AdamW or Lion as in :class:`Muon`. Differences: every
    Muon option applies to the orthogonalization (presets, preconditioning, row blocks; the normalisation
    and the ratio then use the whole matrix), and ``v`` (``second_moment``) is kept in float32, or in the
    param's dtype when wider, also across ``load_state_dict``. The authors' code (zichongli5/NorMuon)
    differs from the paper: Nesterov, ``sqrt(max(1, rows/cols))``, and ``O`` rescaled to its Frobenius
    norm before the normalisation instead of ``sqrt(min(rows, cols))``.
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
        check_number("muon_beta2", muon_beta2, ge=0, lt=1)
        check_number("normuon_eps", normuon_eps, gt=0)
        self._normuon = {"muon_beta2": muon_beta2, "normuon_eps": normuon_eps}
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, adjust_lr=adjust_lr, **kwargs)

    def _extra_defaults(self, defaults: dict[str, Any]) -> None:
        defaults.update(self._normuon)

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """``second_moment`` back in its own precision: torch casts every floating state tensor to its param's
        dtype, which would round a bf16 param's float32 second moment to bf16 (and the next step would mix
        the two). The saved tensors come from the dict as loaded, after the user's load pre-hooks."""
        final = state_dict
        if final is None:
            return
        saved_ids = [i for group in final["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for i, p in zip(saved_ids, params):
            saved = final["state"].get(i, {}).get("second_moment")
            if isinstance(saved, torch.Tensor) and p in self.state:
                self.state[p]["second_moment"] = saved.to(device=p.device, dtype=F.work_dtype(p.dtype))

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        updates = self._momentum(group, params, grads, take, sf)
        parts = self._orthogonal_parts(group, updates)  # as Muon: exact (split or whole), or "local"
        lr = float(group["lr"])
        for p, (update, rows, _shapes) in zip(params, parts):
            # The second moment and the normalisation run in float32, or in the param's dtype when wider. The
            # second moment is one entry per row of the whole matrix, a plain tensor: the same on every rank.
            work = F.work_dtype(p.dtype)
            state = self.state[p]
            if rows is None:
                view = F.matrix_view(update, group["flatten"]).to(work)
                if "second_moment" not in state:
                    state["second_moment"] = torch.zeros((*view.shape[:-1], 1), dtype=view.dtype, device=p.device)
                normed = F.normuon_normalize_(
                    view, state["second_moment"], beta2=group["muon_beta2"], eps=group["normuon_eps"], take=take
                )
                applied = S.like(normed.to(p.dtype), p)
                rows_cols = view.shape[-2:]
            else:
                normed, rows_cols = self._normalize_rows(group, p, update, rows, take)
                applied = D.to_layout(normed.to(p.dtype), p)
            alpha = lr * F.adjust_lr_ratio(group["adjust_lr"], *rows_cols)
            F.decay_and_apply_(
                p, applied, lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], take=take,
            )

    def _normalize_rows(
        self, group: dict[str, Any], p: torch.Tensor, update: torch.Tensor, rows: tuple[int, int],
        take: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """The normalisation of :func:`~optreg_muon.functional.matrix.normuon_normalize_` from this rank's rows.

        Each row's mean square is local to its row; the rows' statistics (one number per row) are gathered so
        every rank updates the whole second moment alike, and the Frobenius norm of the normalised matrix is
        ``sqrt(sum_rows cols * meansq / (sqrt(v) + eps)^2)``, computed from them without another collective.
        """
        work = F.work_dtype(p.dtype)
        flatten = group["flatten"]
        full = F.matrix_view(torch.empty(p.shape, device="meta"), flatten).shape
        view = update.reshape(update.shape[0], *full[1:]).to(work)
        meansq = view.square().mean(dim=-1, keepdim=True)
        if is_sharded(p):
            from torch.distributed.tensor import DTensor

            shape = (p.shape[0], *meansq.shape[1:])
            stride = torch.empty(shape, device="meta").stride()
            meansq = DTensor.from_local(meansq, p.device_mesh, p.placements, shape=torch.Size(shape), stride=stride,
                                        run_check=False).full_tensor()
        state = self.state[p]
        if "second_moment" not in state:
            state["second_moment"] = torch.zeros(meansq.shape, dtype=work, device=p.device)
        v = state["second_moment"]
        new_v = torch.lerp(v, meansq, 1 - group["muon_beta2"])
        commit_(v, new_v, take)
        denominator = new_v.sqrt() + group["normuon_eps"]
        cols = full[-1]
        frob = (cols * meansq / denominator.square()).sum(dim=-2, keepdim=True).sqrt().clamp(min=1e-30)
        m, n = full[-2:]
        scale = math.sqrt(min(m, n)) / frob
        start, stop = rows
        if view.ndim == 2:
            normed = view / denominator[start:stop] * scale
        else:
            normed = view / denominator[start:stop] * scale[start:stop]
        return normed, (m, n)
