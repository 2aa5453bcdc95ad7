"""The built-in tasks of ``optreg train``: data that needs no download, a model, a loss.

``char_lm``
    A character-level GPT-style transformer (:class:`optreg.models.TinyTransformer`)
    on the Python standard library's own source files: every top-level ``*.py``
    file of the running interpreter's stdlib directory, in sorted order,
    concatenated up to ``max_chars`` characters. Or on the user's text file
    (``data``). The text is cut into 2048-character chunks and an evenly spread
    ``val_fraction`` of the chunks is held out for validation.

``mlp``
    A small MLP classifier (:class:`optreg.models.TinyMLP`) on a synthetic
    dataset: Gaussian inputs labelled by a fixed random "teacher" network
    (a learnable but non-trivial function), 8192 training and 2048 held-out samples.
    Its evaluations report the held-out accuracy as well as the loss.

The data never depends on ``seed``: the seed sets the model's initial weights
and the order of the training batches, so runs with one seed see the same
batches in the same order whatever the optimizer.
"""

from __future__ import annotations

import hashlib
import math
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from optreg.errors import SpecError
from optreg.models import TinyMLP, TinyTransformer
from optreg_train.specs import TrainSpec

__all__ = ["CharLMData", "MLPData", "Task", "load_task", "stdlib_corpus", "stdlib_files"]

CHUNK = 2048
MLP_INPUTS = 16
MLP_CLASSES = 8
MLP_TRAIN = 8192
MLP_VAL = 2048
#: Seed of the synthetic dataset (fixed: the data is the same for every run seed).
MLP_DATA_SEED = 20240917


def stdlib_files() -> list[Path]:
    """The standard library's top-level source files, sorted by name (the default corpus)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


def stdlib_corpus(max_chars: int) -> tuple[str, str]:
    """The default text: stdlib sources concatenated up to ``max_chars``; returns (text, description)."""
    parts: list[str] = []
    total = 0
    used = 0
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        total += len(text)
        used += 1
        if total >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    return text, f"the Python {platform.python_version()} standard library ({used} files, {len(text):,} characters)"


def _split_chunks(n: int, val_fraction: float) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Chunk boundaries of train and validation: chunk i is held out when floor((i+1)f) > floor(i f)."""
    train, val = [], []
    n_chunks = math.ceil(n / CHUNK)
    for i in range(n_chunks):
        span = (i * CHUNK, min(n, (i + 1) * CHUNK))
        # Offset by half a chunk's share so the first held-out chunk is not the very first one.
        held = math.floor((i + 1) * val_fraction + 0.5) > math.floor(i * val_fraction + 0.5)
        (val if held else train).append(span)
    return train, val


@attrs.frozen
class CharLMData:
    """Encoded text: train and validation streams of character ids, and the vocabulary."""

    train: torch.Tensor
    val: torch.Tensor
    vocab: str
    source: str
    fingerprint: str

    @classmethod
    def from_text(cls, text: str, val_fraction: float, source: str) -> CharLMData:
        codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)
        uniques, ids = torch.unique(codes, return_inverse=True)
        ids = ids.to(torch.int64)
        vocab = "".join(chr(int(c)) for c in uniques)
        train_spans, val_spans = _split_chunks(len(text), val_fraction)
        train = torch.cat([ids[a:b] for a, b in train_spans]) if train_spans else ids[:0]
        val = torch.cat([ids[a:b] for a, b in val_spans]) if val_spans else ids[:0]
        fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return cls(train=train, val=val, vocab=vocab, source=source, fingerprint=fingerprint)


@attrs.frozen
class MLPData:
    """The synthetic classification dataset."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    source: str
    fingerprint: str

    @classmethod
    def make(cls) -> MLPData:
        gen = torch.Generator().manual_seed(MLP_DATA_SEED)
        n = MLP_TRAIN + MLP_VAL
        x = torch.randn(n, MLP_INPUTS, generator=gen)
        w1 = torch.randn(MLP_INPUTS, 32, generator=gen) / math.sqrt(MLP_INPUTS)
        w2 = torch.randn(32, MLP_CLASSES, generator=gen) / math.sqrt(32)
        logits = torch.tanh(x @ w1 * 2.0) @ w2 * 4.0
        # A little label noise so the Bayes error is not zero and the loss does not go to 0.
        noisy = logits + 0.5 * torch.randn(n, MLP_CLASSES, generator=gen)
        y = noisy.argmax(dim=1)
        digest = hashlib.sha256(repr((x.double().sum().item(), x.abs().double().sum().item(), y.tolist())).encode())
        return cls(
            x_train=x[:MLP_TRAIN],
            y_train=y[:MLP_TRAIN],
            x_val=x[MLP_TRAIN:],
            y_val=y[MLP_TRAIN:],
            source=f"synthetic teacher-labelled data ({MLP_TRAIN} train / {MLP_VAL} val, {MLP_CLASSES} classes)",
            fingerprint=digest.hexdigest()[:16],
        )


class Task:
    """A built-in task: makes the model, the training batches (from a generator) and the held-out batches.

    ``unit`` names what ``tokens`` counts (characters or samples); a step
    consumes ``tokens_per_step`` of them.
    """

    name: str = ""
    unit: str = "tokens"

    def __init__(self, train: TrainSpec, data: Any) -> None:
        self.spec = train
        self.data = data

    @property
    def source(self) -> str:
        return self.data.source

    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    @property
    def tokens_per_step(self) -> int:
        return self.spec.tokens_per_step

    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def train_batch(
        self, gen: torch.Generator, device: torch.device, rows: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: ``batch_size`` rows, or ``rows`` (a data-parallel run draws the global batch, then
        each rank takes its slice: the same batches in the same order as one process with that batch size)."""
        raise NotImplementedError

    def val_batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    #: Whether the held-out evaluation reports accuracy (a classification task) as well as the loss.
    reports_accuracy: bool = False

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the model's predictions (over every target)."""
        out = model(inputs)
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]).float(), targets.reshape(-1))

    def eval_batch(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int | None]:
        """One held-out batch: the summed loss over its targets, and how many the model got right (None unless
        :attr:`reports_accuracy`); one forward pass for both."""
        out = model(inputs)
        logits, flat = out.reshape(-1, out.shape[-1]).float(), targets.reshape(-1)
        loss = float(nn.functional.cross_entropy(logits, flat, reduction="sum"))
        correct = int((logits.argmax(dim=-1) == flat).sum()) if self.reports_accuracy else None
        return loss, correct


class CharLMTask(Task):
    name = "char_lm"
    unit = "tokens"

    def __init__(self, train: TrainSpec, data: CharLMData) -> None:
        super().__init__(train, data)
        need = train.seq_len + 1
        for part, stream in (("training", data.train), ("held-out", data.val)):
            if len(stream) < need:
                raise SpecError(
                    f"the {part} split of {data.source} has {len(stream)} characters; a sequence needs "
                    f"{need} (seq_len + 1): use more text, a larger val_fraction or a smaller seq_len",
                    path="$.train.data" if train.data else "$.train.seq_len",
                )
        positions = len(data.val) - need + 1
        count = train.eval_batches * train.batch_size
        # Evenly spread, fixed windows over the held-out text: the same ones at every evaluation.
        self._val_offsets = torch.linspace(0, positions - 1, steps=count).round().to(torch.int64)
        self._window = torch.arange(need)

    def make_model(self) -> nn.Module:
        t = self.spec
        return TinyTransformer(
            vocab_size=len(self.data.vocab), d_model=t.d_model, n_layers=t.n_layers, n_heads=t.n_heads,
            max_len=t.seq_len,
        )

    def _windows(self, stream: torch.Tensor, offsets: torch.Tensor, device: torch.device):
        seqs = stream[offsets[:, None] + self._window].to(device, non_blocking=True)
        return seqs[:, :-1], seqs[:, 1:]

    def train_batch(
        self, gen: torch.Generator, device: torch.device, rows: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        high = len(self.data.train) - self.spec.seq_len
        offsets = torch.randint(0, high, (rows or self.spec.batch_size,), generator=gen)
        return self._windows(self.data.train, offsets, device)

    def val_batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in self._val_offsets.split(self.spec.batch_size):
            yield self._windows(self.data.val, chunk, device)


class MLPTask(Task):
    name = "mlp"
    unit = "samples"
    reports_accuracy = True

    def make_model(self) -> nn.Module:
        return TinyMLP(d_in=MLP_INPUTS, d_hidden=self.spec.d_model, d_out=MLP_CLASSES)

    def train_batch(
        self, gen: torch.Generator, device: torch.device, rows: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.data.x_train), (rows or self.spec.batch_size,), generator=gen)
        return self.data.x_train[idx].to(device), self.data.y_train[idx].to(device)

    def val_batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The whole held-out set, in eval_batches pieces.
        n = len(self.data.x_val)
        size = max(1, math.ceil(n / self.spec.eval_batches))
        for start in range(0, n, size):
            yield self.data.x_val[start : start + size].to(device), self.data.y_val[start : start + size].to(device)


_DATA_CACHE: dict[tuple, Any] = {}


def _read_text(train: TrainSpec) -> tuple[str, str]:
    if train.data is None:
        text, source = stdlib_corpus(train.max_chars)
        if len(text) < 1000:
            raise SpecError(
                f"found no standard-library source to train on ({source}); set `data` to a text file",
                path="$.train.data",
            )
        return text, source
    path = Path(train.data)
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read(train.max_chars)
    except FileNotFoundError:
        raise SpecError(f"data file not found: {train.data}", path="$.train.data") from None
    except IsADirectoryError:
        raise SpecError(f"data is a directory, not a text file: {train.data}", path="$.train.data") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"data file is not UTF-8 text: {train.data} ({exc.reason})", path="$.train.data") from None
    except OSError as exc:
        raise SpecError(f"cannot read the data file {train.data}: {exc}", path="$.train.data") from None
    return text, str(path)


def load_task(train: TrainSpec, *, file: str | None = None) -> Task:
    """The task ``train`` names, with its data loaded (cached per process: ``compare`` reads it once).

    Problems with the data are :class:`SpecError` s naming ``file`` (the spec) and ``$.train.<key>``.
    """
    try:
        return _load_task(train)
    except SpecError as exc:
        raise (exc.with_file(file) if exc.file is None and file else exc) from None


def _load_task(train: TrainSpec) -> Task:
    if train.task == "mlp":
        key: tuple = ("mlp",)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = MLPData.make()
        return MLPTask(train, _DATA_CACHE[key])
    key = ("char_lm", train.data, train.max_chars, train.val_fraction)
    if train.data is not None:
        try:
            stat = Path(train.data).stat()
            key += (stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass
    if key not in _DATA_CACHE:
        text, source = _read_text(train)
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = CharLMData.from_text(text, train.val_fraction, source)
    return CharLMTask(train, _DATA_CACHE[key])
