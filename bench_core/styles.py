"""One plotting style per optimizer, the same in every figure of a report.

Ten colours alone repeat after ten optimizers, so a style is a colour with a marker and a
line style. Optimizer ``i`` (in sorted name order) gets colour ``i mod 10``, marker
``i // 10`` and line style ``i // 10`` (each modulo its list), so any two of the first
``STYLES_DISTINCT`` optimizers differ in colour or in both marker and line style; figures
that need the line style for something else (a batch size) still tell optimizers apart by
colour and marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: matplotlib's "tab10" colours, written out so no colour map lookup is needed.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")
#: How many optimizers get pairwise distinct (colour, marker, line style) triples.
STYLES_DISTINCT = len(COLOURS) * min(len(MARKERS), len(LINE_STYLES))


@dataclass(frozen=True)
class Style:
    """How one optimizer is drawn."""

    color: str
    marker: str
    linestyle: str

    def line(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``: colour, marker and line style, with ``overrides`` applied."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle} | overrides


def style_at(index: int) -> Style:
    """The ``index``-th style of the sequence described in the module docstring."""
    cycle = index // len(COLOURS)
    return Style(COLOURS[index % len(COLOURS)], MARKERS[cycle % len(MARKERS)], LINE_STYLES[cycle % len(LINE_STYLES)])


def optimizer_styles(names: Iterable[str]) -> dict[str, Style]:
    """A style per optimizer name, assigned in sorted order so the same names always get the same styles."""
    return {name: style_at(i) for i, name in enumerate(sorted(set(names)))}
