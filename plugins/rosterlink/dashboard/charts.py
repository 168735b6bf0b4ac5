"""The page's small SVG charts as geometry: where each bar, label and legend entry goes.

Pure functions, no HTML: ``templates/charts.html`` draws a :class:`HBarChart` or
:class:`ColumnChart` (its macros escape every text), so the page needs no script and loads nothing.
Coordinates are kept as the strings the SVG shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PALETTE = {
    "loaded": "#2f7d4f",
    "rejected": "#c8463d",
    "duplicate": "#8b95a1",
    "pending": "#d39b2a",
    "active": "#2f6db5",
    "exited": "#b8c4d0",
    "household": "#2f6db5",
    "case": "#a0522d",
    "bar": "#2f6db5",
}


def colour(key: str) -> str:
    """The colour of a series (the default bar colour for a key without one)."""
    return PALETTE.get(key, PALETTE["bar"])


@dataclass(frozen=True)
class Legend:
    """One legend entry: a swatch at ``x`` and its text."""

    x: int
    colour: str
    text: str


@dataclass(frozen=True)
class Bar:
    """A rectangle with its tooltip (``title``)."""

    x: str
    y: str
    width: str
    height: str
    colour: str
    title: str


@dataclass(frozen=True)
class Label:
    """A text at a point."""

    x: str
    y: str
    text: str


@dataclass(frozen=True)
class HBarRow:
    """One horizontal bar: its label, its stacked parts, its total after the bar."""

    label: Label
    bars: list[Bar]
    total: Label


@dataclass(frozen=True)
class HBarChart:
    title: str
    width: int
    height: int
    legend: list[Legend] = field(default_factory=list)
    rows: list[HBarRow] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows


@dataclass(frozen=True)
class Column:
    """One stacked column and its label under the axis (None when labels are thinned out)."""

    bars: list[Bar]
    label: Label | None


@dataclass(frozen=True)
class ColumnChart:
    title: str
    width: int
    height: int
    axis_y: int = 0  # the baseline's y
    axis_x1: int = 0
    axis_x2: int = 0
    peak: Label | None = None  # the peak value at the top of the axis
    zero: Label | None = None
    legend: list[Legend] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.columns


def _legend(series: dict[str, str], x: int) -> list[Legend]:
    out = []
    for key, text in series.items():
        out.append(Legend(x, colour(key), text))
        x += 24 + 13 * len(text)
    return out


def hbar_chart(
    title: str, rows: list[tuple[str, list[tuple[str, int]]]], series: dict[str, str], width: int = 520
) -> HBarChart:
    """Horizontal stacked bars: ``rows`` = [(label, [(series key, value), ...])];
    ``series`` = key -> legend."""
    if not rows:
        return HBarChart(title, width, 0)
    label_w, bar_h, gap, top = 120, 18, 6, 24
    total_max = max((sum(v for _, v in parts) for _, parts in rows), default=0) or 1
    plot_w = width - label_w - 60
    height = top + len(rows) * (bar_h + gap) + 4
    out = []
    for i, (label, parts) in enumerate(rows):
        y = top + i * (bar_h + gap)
        bars = []
        x0 = float(label_w)
        for key, value in parts:
            w = plot_w * value / total_max
            if value:
                bars.append(
                    Bar(
                        f"{x0:.1f}",
                        str(y),
                        f"{max(w, 1):.1f}",
                        str(bar_h),
                        colour(key),
                        f"{label} · {series.get(key, key)}: {value:,}",
                    )
                )
            x0 += w
        total = sum(v for _, v in parts)
        out.append(
            HBarRow(
                Label(str(label_w - 6), str(y + bar_h - 5), label),
                bars,
                Label(f"{x0 + 4:.1f}", str(y + bar_h - 5), f"{total:,}"),
            )
        )
    return HBarChart(title, width, height, _legend(series, label_w), out)


def column_chart(
    title: str,
    labels: list[str],
    series: dict[str, str],
    values: dict[str, list[int]],
    width: int = 760,
    height: int = 200,
) -> ColumnChart:
    """Vertical stacked columns over ``labels`` (e.g. nights);
    ``values`` = series key -> one value per label."""
    if not labels:
        return ColumnChart(title, width, height)
    left, bottom, top = 44, 34, 22
    plot_h = height - bottom - top
    totals = [sum(values[k][i] for k in series) for i in range(len(labels))]
    peak = max(totals) or 1
    step = (width - left - 10) / len(labels)
    bar_w = max(min(step * 0.7, 48), 4)
    columns = []
    for i, label in enumerate(labels):
        cx = left + step * i + (step - bar_w) / 2
        y = float(top + plot_h)
        bars = []
        for key in series:
            v = values[key][i]
            h = plot_h * v / peak
            if v:
                bars.append(
                    Bar(
                        f"{cx:.1f}",
                        f"{y - h:.1f}",
                        f"{bar_w:.1f}",
                        f"{max(h, 1):.1f}",
                        colour(key),
                        f"{label} · {series[key]}: {v:,}",
                    )
                )
            y -= h
        shown = len(labels) <= 16 or i % max(len(labels) // 12, 1) == 0
        text = label[5:] if len(label) == 10 else label  # a night's date without its year
        columns.append(
            Column(bars, Label(f"{cx + bar_w / 2:.1f}", str(height - bottom + 14), text) if shown else None)
        )
    return ColumnChart(
        title,
        width,
        height,
        axis_y=top + plot_h,
        axis_x1=left,
        axis_x2=width - 6,
        peak=Label(str(left - 4), str(top + 4), f"{peak:,}"),
        zero=Label(str(left - 4), str(top + plot_h), "0"),
        legend=_legend(series, left),
        columns=columns,
    )
