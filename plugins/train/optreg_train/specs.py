"""The ``[train]`` table of spec files: the main job's settings (no torch import: the registry loads this)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from optreg import FieldValueError, field
from optreg.specs import MAX_COUNT, MAX_STEPS

__all__ = ["FLOAT16_ON_CPU", "MAX_BATCH_TOKENS", "TrainSpec"]

#: Most tokens one char_lm micro-batch may hold (batch_size x seq_len): 2**28, a 2 GB index tensor before
#: any activation, far beyond what this job's small models train with, so a typo cannot take the machine down.
MAX_BATCH_TOKENS = 2**28

#: Why ``autocast = "float16"`` is refused on CPU (the spec's check and the run's, once the device is known).
FLOAT16_ON_CPU = (
    '"float16" needs CUDA (its GradScaler guards fp16 gradients against underflow, which optreg does on '
    'CUDA only); on CPU use "bfloat16", or leave autocast out for fp32'
)


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
    steps: int = field(
        200, ge=1, le=MAX_STEPS,
        doc="Optimizer steps; also the schedule's length unless [scheduler] sets t_max.",
    )
    batch_size: int = field(
        16, ge=1, le=MAX_COUNT,
        doc="Sequences (char_lm) or samples (mlp) per micro-batch: a step takes grad_accum_steps of them.",
    )
    grad_accum_steps: int = field(
        1, ge=1, le=4096,
        doc="Micro-batches whose gradients are summed into one optimizer step (each loss divided by this "
        "count, so the step equals one batch of batch_size x grad_accum_steps).",
    )
    seed: int = field(0, ge=0, doc="Seed for model init and data order (the data itself does not depend on it).")
    seq_len: int = field(64, ge=2, le=8192, doc="Characters per training sequence (char_lm).")
    d_model: int = field(32, ge=4, le=8192, doc="Width: the transformer's embedding size (char_lm) "
                         "or the MLP's hidden width (mlp).")
    n_layers: int = field(2, ge=1, le=128, doc="Transformer blocks (char_lm).")
    n_heads: int = field(2, ge=1, le=256, doc="Attention heads (char_lm); must divide d_model.")
    eval_interval: int = field(
        25, ge=1, le=MAX_STEPS,
        doc="Steps between evaluations of the held-out loss and checkpoints (the last step always gets both).",
    )
    eval_batches: int = field(8, ge=1, le=100_000, doc="Held-out batches per evaluation (the same ones every time).")
    val_fraction: float = field(0.1, gt=0, le=0.5, doc="Share of the data held out for validation.")
    data: str | None = field(
        None,
        doc="A UTF-8 text file for the char_lm task instead of the standard library's source "
        "(relative paths are relative to the current directory).",
    )
    max_chars: int = field(
        1_000_000, ge=1_000, le=2**36,
        doc="At most this many characters of text are read (char_lm); at most 2**36 (64 Gi characters).",
    )
    grad_clip: float | None = field(None, gt=0, doc="Clip the global gradient norm to this value before each step.")
    device: Literal["auto", "cpu", "cuda"] = field("auto", doc="Where to train; `auto` picks CUDA when available.")
    autocast: Literal["bfloat16", "float16"] | None = field(
        None,
        doc="Mixed precision: forward passes under torch.autocast in this dtype (weights, gradients and "
        "optimizer state stay fp32). `bfloat16` on CPU and CUDA; `float16` on CUDA only, with a GradScaler.",
    )
    memory_check: bool = field(
        True,
        doc="Before the first step, refuse a run whose optimizer state and gradients (estimated from the "
        "parameters' shapes, per rank) would not fit in the memory available on the device.",
    )

    def __attrs_post_init__(self) -> None:
        if self.task == "char_lm" and self.batch_size * self.seq_len > MAX_BATCH_TOKENS:
            raise FieldValueError(
                "batch_size",
                f"batch_size x seq_len must be <= {MAX_BATCH_TOKENS} tokens per micro-batch, got "
                f"{self.batch_size} x {self.seq_len}; use grad_accum_steps for a larger step",
            )
        if self.task == "char_lm" and self.d_model % self.n_heads:
            raise FieldValueError(
                "n_heads", f"must divide d_model ({self.d_model}); got {self.n_heads}"
            )
        if self.data is not None and self.task != "char_lm":
            raise FieldValueError("data", f"only the char_lm task reads a text file; task is {self.task!r}")
        if self.data is not None and not self.data.strip():
            raise FieldValueError("data", "expected a file name, got an empty string")
        if self.autocast == "float16" and self.device == "cpu":
            raise FieldValueError("autocast", FLOAT16_ON_CPU)

    @property
    def batch_label(self) -> str:
        """The batch of a step as the tables say it: ``batch 16``, or ``batch 16 x 4 micro-batches``."""
        accum = f" x {self.grad_accum_steps} micro-batches" if self.grad_accum_steps > 1 else ""
        return f"batch {self.batch_size}{accum}"

    @property
    def tokens_per_step(self) -> int:
        """What one step consumes: characters (``char_lm``: batch x accumulation x sequence) or samples (``mlp``)."""
        rows = self.batch_size * self.grad_accum_steps
        return rows * self.seq_len if self.task == "char_lm" else rows

    def make_model(self) -> Any:
        """The model this table's task trains, built without reading data: what ``optreg validate``, ``groups`` and
        ``lr`` build the spec on (char_lm's vocabulary comes from the data, so its embedding and head take the
        default size here; every name, role and other shape is the run's)."""
        from optreg.models import TinyMLP, TinyTransformer
        from optreg_train.tasks import MLP_CLASSES, MLP_INPUTS

        if self.task == "mlp":
            return TinyMLP(d_in=MLP_INPUTS, d_hidden=self.d_model, d_out=MLP_CLASSES)
        return TinyTransformer(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, max_len=self.seq_len)

    def run_length(self, units: str, data_parallel_size: int = 1) -> int:
        """The run's length in a schedule's units: ``steps``, or the token budget ``steps x tokens_per_step``
        of every one of ``data_parallel_size`` ranks (the global batch's tokens)."""
        return self.steps if units == "steps" else self.steps * self.tokens_per_step * data_parallel_size
