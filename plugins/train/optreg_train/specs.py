"""The ``[train]`` table of spec files: the main job's settings (no torch import: the registry loads this)."""

from __future__ import annotations

from typing import Literal

import attrs

from optreg import FieldValueError, field

__all__ = ["TrainSpec"]


@attrs.frozen(kw_only=True)
class TrainSpec:
    """The ``[train]`` table: settings of the main job (``optreg train`` / ``optreg compare``).

    ``char_lm`` trains a small character-level transformer on the Python
    standard library's own source (or on the text file ``data``), with a
    held-out split; ``mlp`` trains a small MLP classifier on a synthetic
    dataset in seconds. The model defaults are those of
    :class:`optreg.models.TinyTransformer` (the model of ``optreg groups``). See
    docs/training.md.
    """

    task: Literal["char_lm", "mlp"] = field(
        "char_lm",
        doc="Built-in task: `char_lm` (character-level transformer LM on the standard library's source "
        "or on `data`) or `mlp` (small MLP classifier on synthetic data, trains in seconds).",
    )
    steps: int = field(200, ge=1, doc="Optimizer steps; also the schedule's length unless [scheduler] sets t_max.")
    batch_size: int = field(16, ge=1, doc="Sequences (char_lm) or samples (mlp) per step.")
    seed: int = field(0, ge=0, doc="Seed for model init and data order (the data itself does not depend on it).")
    seq_len: int = field(64, ge=2, le=8192, doc="Characters per training sequence (char_lm).")
    d_model: int = field(32, ge=4, le=8192, doc="Width: the transformer's embedding size (char_lm) "
                         "or the MLP's hidden width (mlp).")
    n_layers: int = field(2, ge=1, le=128, doc="Transformer blocks (char_lm).")
    n_heads: int = field(2, ge=1, le=256, doc="Attention heads (char_lm); must divide d_model.")
    eval_interval: int = field(
        25, ge=1, doc="Steps between evaluations of the held-out loss and checkpoints (the last step always gets both)."
    )
    eval_batches: int = field(8, ge=1, le=100_000, doc="Held-out batches per evaluation (the same ones every time).")
    val_fraction: float = field(0.1, gt=0, le=0.5, doc="Share of the data held out for validation.")
    data: str | None = field(
        None,
        doc="A UTF-8 text file for the char_lm task instead of the standard library's source "
        "(relative paths are relative to the current directory).",
    )
    max_chars: int = field(1_000_000, ge=1_000, doc="At most this many characters of text are read (char_lm).")
    grad_clip: float | None = field(None, gt=0, doc="Clip the global gradient norm to this value before each step.")
    device: Literal["auto", "cpu", "cuda"] = field("auto", doc="Where to train; `auto` picks CUDA when available.")

    def __attrs_post_init__(self) -> None:
        if self.task == "char_lm" and self.d_model % self.n_heads:
            raise FieldValueError(
                "n_heads", f"must divide d_model ({self.d_model}); got {self.n_heads}"
            )
        if self.data is not None and self.task != "char_lm":
            raise FieldValueError("data", f"only the char_lm task reads a text file; task is {self.task!r}")
        if self.data is not None and not self.data.strip():
            raise FieldValueError("data", "expected a file name, got an empty string")

    @property
    def tokens_per_step(self) -> int:
        """What one step consumes: characters (``char_lm``: batch x sequence) or samples (``mlp``)."""
        return self.batch_size * self.seq_len if self.task == "char_lm" else self.batch_size

    def run_length(self, units: str, data_parallel_size: int = 1) -> int:
        """The run's length in a schedule's units: ``steps``, or the token budget ``steps x tokens_per_step``
        of every one of ``data_parallel_size`` ranks (the global batch's tokens)."""
        return self.steps if units == "steps" else self.steps * self.tokens_per_step * data_parallel_size
