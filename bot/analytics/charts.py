"""The report's charts, drawn by matplotlib: SVG for the HTML page, PNG for the managers' chat.

Only matplotlib's object API is used (`Figure` and the Agg canvas), never `pyplot`: pyplot
keeps every figure it makes in a process-wide registry until it is closed, and the bot is a
long-running async process. Each figure here belongs to its caller alone.

Drawing and rendering are CPU work of tens to hundreds of milliseconds: from async code, run
them in a thread, e.g. `await asyncio.to_thread(lambda: png(funnel(stages, title)))`. Nothing
here does that itself: the caller knows whether it is on an event loop.

Labels are user data (source names, questions): a `$` in them is shown as it is, never read
as matplotlib's math markup, and long ones are shortened. Text is drawn in DejaVu Sans, which
ships with matplotlib and has Cyrillic; in SVG it becomes paths, so the page looks the same
without any font on the reader's machine.
"""

from __future__ import annotations

import html
import io
import math
import re
import secrets
from collections.abc import Sequence

import numpy
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

FONT = "DejaVu Sans"
# Okabe and Ito's palette: told apart by colour-blind readers too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
EMPTY_CELL = "#e6e6e6"  # a heat-map cell with no value
LABEL_LIMIT = 40  # characters of an axis label; a longer one is cut with "…"
WIDTH = 8.0  # inches; 100 dpi makes 800 px, readable in a chat on a phone
NO_DATA = "нет данных"
# Ids matplotlib gives elements of an SVG (glyphs, clip paths): unique per chart once
# prefixed, since the page holds many charts in one document.
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def plain(text: str, limit: int = LABEL_LIMIT) -> str:
    """A label as matplotlib should show it: `$` literal (not math markup), one line, cut."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, max(2.5, height)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(fig: Figure, title: str) -> None:
    fig.suptitle(plain(title, 90), fontfamily=FONT, fontsize=13, fontweight="bold")


def _no_data(fig: Figure) -> None:
    fig.text(0.5, 0.5, NO_DATA, ha="center", va="center", fontfamily=FONT, color="#666666")


def _russian(number: str) -> str:
    """Numbers as the report's tables write them (bot.analytics.tables.shown): thousands
    apart, a decimal comma."""
    return number.replace(",", " ").replace(".", ",")


def _share(part: float, whole: float) -> str:
    if not whole:
        return "—"
    return _russian(f"{100 * part / whole:.1f}").removesuffix(",0") + "%"


def _number(value: float) -> str:
    if float(value).is_integer():
        return _russian(f"{int(value):,}")
    return _russian(f"{value:,.1f}")


def _axis_number(value: float, _position: float) -> str:
    if float(value).is_integer():
        return _number(value)
    return _russian(f"{value:,.2f}".rstrip("0").rstrip("."))


def funnel(stages: Sequence[tuple[str, int]], title: str) -> Figure:
    """Horizontal bars, the first stage on top; on each bar its count and its share of the
    first stage."""
    fig = _figure(0.55 * len(stages) + 1.3)
    _title(fig, title)
    if not stages:
        _no_data(fig)
        return fig
    ax = fig.subplots()
    names = [plain(name) for name, _ in stages]
    counts = [max(0, int(value)) for _, value in stages]
    first = counts[0]
    positions = list(range(len(stages)))
    bars = ax.barh(positions, counts, color=PALETTE[0], height=0.7)
    ax.set_yticks(positions, names, fontfamily=FONT)
    ax.invert_yaxis()
    top = max(counts) or 1
    ax.set_xlim(0, top * 1.3)  # room for the figures right of the longest bar
    for bar, value in zip(bars, counts, strict=True):
        ax.text(
            bar.get_width() + top * 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{_number(value)} ({_share(value, first)})",
            va="center",
            fontfamily=FONT,
            fontsize=10,
        )
    ax.xaxis.set_visible(False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return fig


def _cell_text(value: float, fmt: str) -> str:
    text = fmt.format(value) if "{" in fmt else format(value, fmt)
    return _DECIMAL_POINT.sub(",", text)  # a decimal comma, as in the tables


def heatmap(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    title: str,
    fmt: str = "{:.0f}",
) -> Figure:
    """A grid coloured by value, each value written in its cell; a None cell is grey and
    blank. `fmt` is a `str.format` template ("{:.0f}%") or a format spec (".1f"); a decimal
    point in a number becomes a comma, as in the tables."""
    fig = _figure(0.45 * len(row_labels) + 1.6)
    _title(fig, title)
    if not row_labels or not column_labels:
        _no_data(fig)
        return fig
    ax = fig.subplots()
    grid = [[math.nan if value is None else float(value) for value in row] for row in values]
    known = [value for row in grid for value in row if not math.isnan(value)]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    if low == high:
        high = low + 1
    cmap = colormaps["Blues"].with_extremes(bad=EMPTY_CELL)
    # Vector cells (not an embedded raster): sharp on a phone and in print.
    ax.pcolormesh(
        numpy.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=low,
        vmax=high,
        edgecolors="white",
        linewidth=1,
    )
    ax.set_xticks(
        [x + 0.5 for x in range(len(column_labels))],
        [plain(c) for c in column_labels],
        fontfamily=FONT,
    )
    ax.set_yticks(
        [y + 0.5 for y in range(len(row_labels))],
        [plain(r) for r in row_labels],
        fontfamily=FONT,
    )
    ax.invert_yaxis()
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            if math.isnan(value):
                continue
            red, green, blue = to_rgb(cmap((value - low) / (high - low)))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                x + 0.5,
                y + 0.5,
                plain(_cell_text(value, fmt)),
                ha="center",
                va="center",
                fontsize=9,
                fontfamily=FONT,
                color="white" if dark else "black",
            )
    return fig


def bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str = "",
    errors: dict[str, Sequence[float | None]] | None = None,
) -> Figure:
    """Grouped vertical bars: one group per category, one bar per series (revenue and CPA by
    source, a rate per A/B variant); a None value leaves its bar out. `errors` (by series)
    draws error bars, say a confidence interval's half-width."""
    fig = _figure(4.2)
    _title(fig, title)
    if not categories or not series:
        _no_data(fig)
        return fig
    ax = fig.subplots()
    width = 0.8 / len(series)
    top = bottom = 0.0  # a negative value (a ROMI below zero) goes below the axis
    for name, values in series.items():
        spreads = list((errors or {}).get(name) or [])
        for i, value in enumerate(values):
            spread = (spreads[i] if i < len(spreads) else None) or 0
            top = max(top, (value or 0) + spread)
            bottom = min(bottom, (value or 0) - spread)
    for number, (name, values) in enumerate(series.items()):
        offsets = [i - 0.4 + width * (number + 0.5) for i in range(len(categories))]
        heights = [math.nan if v is None else float(v) for v in values]
        spread = None
        if errors and name in errors:
            spread = [0.0 if e is None else float(e) for e in errors[name]]
        drawn = ax.bar(
            offsets,
            heights,
            width * 0.95,
            yerr=spread,
            capsize=3 if spread else 0,
            label=plain(name),
            color=PALETTE[number % len(PALETTE)],
        )
        if len(categories) * len(series) <= 24:  # figures on the bars while they are legible
            shown = ["" if math.isnan(h) else _number(h) for h in heights]
            ax.bar_label(drawn, shown, padding=2, fontsize=8, fontfamily=FONT)
    ax.set_xticks(range(len(categories)), [plain(c, 24) for c in categories], fontfamily=FONT)
    if len(categories) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel(plain(ylabel), fontfamily=FONT)
    # 1 200 000, not "1.2" under "1e6"; a formatter belongs to one axis, so a new one each
    ax.yaxis.set_major_formatter(FuncFormatter(_axis_number))
    ax.set_ylim(bottom * 1.25, (top or (0 if bottom else 1)) * 1.15)
    if bottom:
        ax.axhline(0, color="#333333", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        ax.legend(prop={"family": FONT}, frameon=False)
    return fig


def lines(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str = "",
) -> Figure:
    """One line per series over `x_labels` (NPS by week, say); a None value is a gap."""
    fig = _figure(4.2)
    _title(fig, title)
    if not x_labels or not series:
        _no_data(fig)
        return fig
    ax = fig.subplots()
    positions = list(range(len(x_labels)))
    for number, (name, values) in enumerate(series.items()):
        points = [math.nan if v is None else float(v) for v in values]
        ax.plot(
            positions,
            points,
            marker="o",
            label=plain(name),
            color=PALETTE[number % len(PALETTE)],
            linewidth=2,
        )
    step = max(1, len(x_labels) // 12)  # at most about a dozen labels under the axis
    ax.set_xticks(positions[::step], [plain(x, 16) for x in x_labels[::step]], fontfamily=FONT)
    ax.set_ylabel(plain(ylabel), fontfamily=FONT)
    ax.yaxis.set_major_formatter(FuncFormatter(_axis_number))
    ax.grid(axis="y", color="#dddddd")
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        ax.legend(prop={"family": FONT}, frameon=False)
    return fig


def svg(fig: Figure, *, keep: bool = False) -> str:
    """The figure as an inline `<svg>` element for an HTML5 page: no XML prolog, no doctype,
    no namespace URLs or metadata, text as glyph paths, width 100% (height from its viewBox),
    and ids prefixed so that several charts can share one page. The figure is cleared after
    rendering unless `keep`."""
    buffer = io.StringIO()
    label = html.escape(fig.get_suptitle().replace(r"\$", "$"), quote=True)
    try:
        fig.savefig(
            buffer,
            format="svg",
            metadata={"Creator": None, "Date": None, "Format": None, "Type": None},
        )
    finally:
        if not keep:
            fig.clear()
    text = _SVG_METADATA.sub("", _SVG_PROLOG.sub("", buffer.getvalue(), count=1))
    prefix = f"c{secrets.token_hex(4)}-"
    ids = set(_SVG_ID.findall(text))
    text = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(
        r'(xlink:href|href)="#([^"]+)"',
        lambda m: f'href="#{prefix}{m.group(2)}"' if m.group(2) in ids else m.group(0),
        text,
    )
    text = re.sub(
        r"url\(#([^)]+)\)",
        lambda m: f"url(#{prefix}{m.group(1)})" if m.group(1) in ids else m.group(0),
        text,
    )
    head_end = text.index(">")
    head = text[:head_end]
    head = re.sub(r'\s(xmlns(:xlink)?|width|height|version)="[^"]*"', "", head)
    head = head.replace("<svg", f'<svg width="100%" role="img" aria-label="{label}"', 1)
    return head + text[head_end:].rstrip()


def png(fig: Figure, dpi: int = 100, *, keep: bool = False) -> bytes:
    """The figure as PNG bytes (800 px wide at the default dpi); cleared unless `keep`."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    finally:
        if not keep:
            fig.clear()
    return buffer.getvalue()
