"""Bar charts drawn on the server as SVG: no chart library, no script, readable by screen readers (each chart
has a title and every bar its value as text; the page shows the same figures as a table)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

ROW = 26  # pixels per bar
LABEL = 190  # pixels for the labels
WIDTH = 640


def bar_chart(title: str, rows: list[tuple[str, int]]) -> Markup:
    """A horizontal bar chart of ``rows`` (``(label, value)``); an empty string when there is nothing."""
    if not rows:
        return Markup("")
    top = max(value for _, value in rows) or 1
    height = ROW * len(rows) + 10
    bars = []
    for i, (label, value) in enumerate(rows):
        y = 5 + i * ROW
        width = round((WIDTH - LABEL - 60) * value / top)
        short = label if len(label) <= 28 else label[:27] + "…"
        bars.append(
            f'<g><title>{escape(label)}: {value}</title>'
            f'<text x="{LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{LABEL}" y="{y + 3}" width="{max(width, 1)}" height="{ROW - 8}" rx="3"></rect>'
            f'<text x="{LABEL + max(width, 1) + 6}" y="{y + 16}">{value}</text></g>'
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>{"".join(bars)}</svg>'
    )
