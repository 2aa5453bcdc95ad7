"""Hand-written C kernels: built once per machine with the system C compiler, loaded with :mod:`ctypes`.

For a step no torch kernel fuses and inductor's generated loop does not run at memory bandwidth
(AdamW with bfloat16 state and stochastic rounding: 3.0x fused AdamW's time per byte compiled,
1.0x as a 40-line C loop). A plain C file builds in well under a second (a C++ torch extension
through :mod:`torch.utils.cpp_extension` needs ninja and compiles torch's headers for about a
minute), and needs nothing from torch but the tensors' data pointers.

The library is built with ``-O3 -march=native`` (so it is only valid on this CPU kind) into
``$OPTREG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/optreg`` or ``~/.cache/optreg``; a per-user folder
under the temporary directory where that cannot be written), named by a hash of the source, the
compiler, the flags and the CPU's feature flags: a home directory shared between machines of
different CPU kinds gets one library per kind. Two processes building at once (a ``torchrun``
launch) each write their own temporary file and rename it into place.

Where there is no C compiler (``CC``, ``cc``, ``gcc``, ``clang``) or ``OPTREG_NATIVE=0``,
:func:`load_library` returns ``None`` and callers take their other paths; a compiler that fails
on the source warns once with its error.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NativeBuildWarning", "cache_dir", "find_c_compiler", "load_function", "load_library", "native_enabled",
    "pointers", "sizes",
]

#: Tried in order: the first that builds wins (OpenMP may be missing, e.g. Apple clang; ``-march=native`` is not
#: understood by every compiler/CPU pair). The source must build without OpenMP (``#ifdef _OPENMP``).
#: ``-ffp-contract=off``: every ``a * b + c`` rounds twice, in the vectorised body and in the scalar tail alike, so an
#: element's result does not depend on where it falls (a thread's share, a tensor's end) nor on the vector width.
_FLAG_SETS = (
    ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fopenmp"),
    ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off"),
    ("-O3", "-fno-math-errno", "-ffp-contract=off"),
)


class NativeBuildWarning(UserWarning):
    """A C kernel did not build here: the step takes its (slower) torch path."""


def native_enabled() -> bool:
    """Whether hand-written C kernels may be used (``OPTREG_NATIVE=0`` turns them off)."""
    return os.environ.get("OPTREG_NATIVE", "1") != "0"


def find_c_compiler() -> str | None:
    """The C compiler to build with: ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on the PATH."""
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """Where built libraries are kept: ``$OPTREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/optreg`` or ``~/.cache/optreg``."""
    if os.environ.get("OPTREG_CACHE_DIR"):
        return Path(os.environ["OPTREG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optreg"


@functools.cache
def _writable(directory: Path) -> Path:
    """``directory``, created if need be, or a per-user one under the temporary directory where it cannot be
    written (a read-only home directory)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"optreg-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _cpu_identity() -> str:
    """The CPU kind a ``-march=native`` build is valid on: its feature flags (Linux), else the platform names."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def load_library(source: Path) -> ctypes.CDLL | None:
    """The shared library built from the C file ``source`` (cached on disk and per process), or ``None`` where
    native kernels are off, no C compiler is found, or it does not build (then one :class:`NativeBuildWarning`)."""
    if not native_enabled():
        return None
    compiler = find_c_compiler()
    if compiler is None:
        return None
    code = Path(source).read_bytes()
    identity = (code, compiler, _compiler_version(compiler), _cpu_identity())
    errors = []
    for flags in _FLAG_SETS:
        digest = hashlib.sha256(repr((identity, flags)).encode()).hexdigest()[:16]
        target = _writable(cache_dir()) / f"{Path(source).stem}-{digest}.so"
        if not target.exists():
            error = _build(compiler, Path(source), flags, target)
            if error is not None:
                errors.append(f"{' '.join(flags)}: {error}")
                continue
        try:
            return ctypes.CDLL(str(target))
        except OSError as exc:
            errors.append(f"{' '.join(flags)}: loading {target}: {exc}")
    warnings.warn(
        f"the C kernel {Path(source).name} did not build with {compiler}; its step takes the torch path instead "
        f"(slower). Set OPTREG_NATIVE=0 to silence this.\n" + "\n".join(e[-2000:] for e in errors),
        NativeBuildWarning, stacklevel=3,
    )
    return None


def load_function(source: Path, name: str, argtypes: Sequence[Any]) -> Any:
    """The C function ``name`` of the library built from ``source`` (see :func:`load_library`), with its argument
    types set and no return value, or ``None`` where the library is not available here."""
    lib = load_library(Path(source))
    if lib is None:
        return None
    fn = getattr(lib, name)
    if fn.argtypes is None:
        fn.argtypes = list(argtypes)
        fn.restype = None
    return fn


def pointers(tensors: Sequence[Any]) -> ctypes.Array:
    """A C array of the tensors' data pointers (``void **``) for a kernel that takes many tensors in one call."""
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


def sizes(tensors: Sequence[Any]) -> ctypes.Array:
    """A C array of the tensors' element counts (``int64_t *``), in the order of :func:`pointers`."""
    return (ctypes.c_int64 * len(tensors))(*(t.numel() for t in tensors))


def _build(compiler: str, source: Path, flags: tuple[str, ...], target: Path) -> str | None:
    """Compile ``source`` into ``target`` (atomically: a temporary file renamed into place); the error or None."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc}"
    try:
        result = subprocess.run([compiler, *flags, "-shared", "-fPIC", "-o", tmp, str(source)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            return (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
