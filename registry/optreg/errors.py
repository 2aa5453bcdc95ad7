"""Errors raised for bad specs and bad plugins.

Every error a user can cause by writing a spec is a :class:`SpecError`: it names
the file (when there is one), the path of the offending field in the form
``$.optimizer.betas[1]`` and says what would be valid.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PluginError", "SpecError", "format_path"]


def format_path(parts: Sequence[str | int]) -> str:
    """Render path segments as ``$.a.b[0]``; integer segments become indices."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


class SpecError(ValueError):
    """A spec is invalid: carries ``file``, ``path`` and a readable ``message``.

    ``errors`` holds every ``(path, message)`` pair found, the first one is also
    exposed as ``path`` / ``message``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "$",
        file: str | None = None,
        errors: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.errors: list[tuple[str, str]] = list(errors) if errors else [(path, message)]
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if len(self.errors) == 1:
            return f"{where}{self.path}: {self.message}"
        lines = [f"{where}{len(self.errors)} errors in spec:"]
        lines += [f"  {path}: {message}" for path, message in self.errors]
        return "\n".join(lines)

    def with_file(self, file: str | None) -> SpecError:
        """Return a copy of this error that names ``file``."""
        return SpecError(self.message, path=self.path, file=file, errors=self.errors)

    def in_table(self, table: str, file: str | None = None) -> SpecError:
        """This error seen from the whole file: paths under ``$.<table>``, and the file (when it had none).

        An optimizer's own ``$.lr`` becomes ``$.optimizer.lr`` once the optimizer table is part of a run.
        """

        def prefix(path: str) -> str:
            return "$." + table + path[1:] if path.startswith("$") else path

        return SpecError(
            self.message,
            path=prefix(self.path),
            file=self.file or file,
            errors=[(prefix(p), m) for p, m in self.errors],
        )

    def __reduce__(self):  # keep pickling (pytest-xdist, multiprocessing) working
        return (_rebuild_spec_error, (self.message, self.path, self.file, self.errors))


def _rebuild_spec_error(message, path, file, errors) -> SpecError:
    return SpecError(message, path=path, file=file, errors=errors)


class PluginError(RuntimeError):
    """A plugin misbehaved while registering (bad class, duplicate name, ...)."""
