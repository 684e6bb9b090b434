"""Activity charts drawn on the server as SVG: no script, nothing fetched, nothing inline-styled
(the CSP allows neither), readable without colour (each bar has its value as a title).

``bars`` draws one bar per day; ``line`` a line through one value per day. Both take
the days' labels and values and return the SVG as markup for a template; every text
in it is escaped here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 180
LEFT, BOTTOM, TOP = 44, 22, 10


def days(since: dt.date, until: dt.date) -> list[dt.date]:
    return [since + dt.timedelta(days=i) for i in range((until - since).days + 1)]


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def _frame(title: str, labels: Sequence[str], top: float, unit: str, body: str) -> Markup:
    plot_h = HEIGHT - BOTTOM - TOP
    axis = (
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="currentColor"/>'
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10" fill="currentColor">'
        f"{escape(_number(top))}{escape(unit)}</text>"
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10" '
        'fill="currentColor">0</text>'
    )
    if labels:
        axis += (
            f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10" fill="currentColor">{escape(labels[0])}</text>'
            f'<text x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end" font-size="10" fill="currentColor">'
            f"{escape(labels[-1])}</text>"
        )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>{axis}{body}</svg>'
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def bars(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> Markup:
    top = _scale(values)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(values), 1)
    parts = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top
        parts.append(
            f'<rect x="{LEFT + i * step + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="currentColor" opacity="0.7"><title>{escape(label)}: '
            f"{escape(_number(value))}{escape(unit)}</title></rect>"
        )
    return _frame(title, labels, top, unit, "".join(parts))


def line(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> Markup:
    top = _scale(values)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(values) - 1, 1)
    points = " ".join(
        f"{LEFT + i * step:.1f},{TOP + plot_h - plot_h * v / top:.1f}" for i, v in enumerate(values)
    )
    dots = "".join(
        f'<circle cx="{LEFT + i * step:.1f}" cy="{TOP + plot_h - plot_h * v / top:.1f}" r="2" '
        f'fill="currentColor"><title>{escape(label)}: {escape(_number(v))}{escape(unit)}</title></circle>'
        for i, (label, v) in enumerate(zip(labels, values, strict=True))
    )
    body = f'<polyline points="{points}" fill="none" stroke="currentColor" stroke-width="2"/>{dots}'
    return _frame(title, labels, top, unit, body)
