"""Plain-text tables for the registry commands (no rich: the core's commands stay light and print text as is).

Columns are as wide as their widest cell up to a cap, the last takes the rest of the terminal's
width (at least 100 columns, so piped output stays readable); longer cells wrap at word
boundaries. When the other columns leave the last one less than 40 characters (``optreg show``'s
descriptions after five columns), its text goes on its own indented lines under each row.
Nothing in a cell is interpreted: ``[d, d, d]`` prints as written.
"""

from __future__ import annotations

import itertools
import shutil
import textwrap
from collections.abc import Sequence

__all__ = ["render_table", "terminal_width"]

#: Widest a column other than the last may get before its cells wrap.
COLUMN_CAP = 32
#: Narrowest the last column may get; with less room its text goes on its own lines under each row.
DETAIL_MIN = 40


def terminal_width() -> int:
    """The terminal's width, or 120 when output is piped; never less than 100."""
    return max(shutil.get_terminal_size((120, 24)).columns, 100)


def render_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None, width: int | None = None
) -> str:
    """``rows`` under ``columns`` as aligned text, wrapped to ``width`` (the terminal's by default)."""
    width = width or terminal_width()
    cells = [[str(c) for c in row] for row in rows]
    widths = []
    for i, name in enumerate(columns[:-1]):
        natural = max([len(name), *(len(row[i]) for row in cells)])
        widths.append(min(natural, max(COLUMN_CAP, len(name))))
    indent = sum(widths) + 2 * len(widths)
    last_natural = max([len(columns[-1]), *(len(row[-1]) for row in cells)])
    details = len(columns) > 1 and width - indent < min(last_natural, DETAIL_MIN)
    if not details:
        widths.append(min(last_natural, width - indent))
    shown = len(widths)

    def lines_of(parts: Sequence[str], detail: bool = True) -> list[str]:
        wrapped = [textwrap.wrap(p, w, break_on_hyphens=False) or [""] for p, w in zip(parts[:shown], widths)]
        out = ["  ".join(p.ljust(w) for p, w in zip(line, widths)).rstrip()
               for line in itertools.zip_longest(*wrapped, fillvalue="")]
        if details and detail and parts[-1]:  # the last column's text on its own lines, under its row
            out += textwrap.wrap(parts[-1], width, initial_indent="    ", subsequent_indent="    ",
                                 break_on_hyphens=False)
        return out

    out = [title] if title else []
    out += lines_of(columns, detail=False)
    out.append("  ".join("-" * w for w in widths))
    for row in cells:
        out += lines_of(row)
    return "\n".join(out)
