"""Tables rendered both as Markdown and as HTML, from one list of rows (study reports, release
timelines)."""

from __future__ import annotations

import html
import re


class Table:
    """A table for both renderings: header, rows of cell strings, Markdown emphasis allowed
    (``**x**`` and ``` `x` ``), right-aligned columns by index."""

    def __init__(self, header: list[str], rows: list[list[str]], numeric: set[int] | None = None):
        self.header, self.rows, self.numeric = header, rows, numeric or set()

    def markdown(self) -> list[str]:
        align = ["---:" if i in self.numeric else "---" for i in range(len(self.header))]
        return [
            "| " + " | ".join(self.header) + " |",
            "|" + "|".join(align) + "|",
            *["| " + " | ".join(row) + " |" for row in self.rows],
            "",
        ]

    def html(self) -> str:
        head = "".join(f"<th>{inline_html(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td{' class=num' if i in self.numeric else ''}>{inline_html(c)}</td>" for i, c in enumerate(row)
            )
            + "</tr>"
            for row in self.rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"


def inline_html(text: str) -> str:
    """Markdown's ``**bold**`` and ``` `code` ``` as HTML, everything else escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
