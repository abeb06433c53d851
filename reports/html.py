"""The shared page shell: one self-contained HTML file with inline CSS and inline figures.

Nothing on a page refers to the network, so a report opens the same from a laptop, a CI
artifact or an air-gapped machine.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2330; margin: 0; background: #f6f7f9; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 10px; border-bottom: 2px solid #d9dde4; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.meta { color: #5b6475; font-size: 13px; }
nav { margin: 12px 0 18px; font-size: 14px; }
nav a { margin-right: 14px; color: #1f5fbf; text-decoration: none; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px; padding: 16px 20px;
          margin-bottom: 18px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13.5px; }
th, td { border-bottom: 1px solid #e6e8ec; padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { background: none; font-weight: 500; color: #5b6475; }
table.kv td.num { text-align: left; }
.name { display: inline-block; max-width: 400px; }
.scroll { max-height: 460px; overflow: auto; display: inline-block; max-width: 100%; }
figure { margin: 10px 0; }
.plot { overflow-x: auto; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #5b6475; font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12.5px;
         font-weight: 600; }
.ok { background: #dff3e4; color: #17602b; }
.warn { background: #fdf1d6; color: #7a5200; }
.fail { background: #fbe0e0; color: #8a1c1c; }
.note { background: #f4f6fb; border-left: 4px solid #8aa4d6; padding: 8px 12px; margin: 10px 0; }
.caveat { background: #fff8e6; border-left: 4px solid #e0b040; padding: 8px 12px; margin: 10px 0; }
code { font-size: 13px; background: #f0f2f5; padding: 0 3px; border-radius: 3px; }
"""


class Raw(str):
    """Text that is already HTML; `cell` and `table` insert it without escaping."""


class NumberText(str):
    """Preformatted number text (a percentage, say): escaped, but right-aligned like numbers."""


@dataclass(frozen=True)
class Section:
    """One titled block of a page; `anchor` is its id, used by the page's navigation."""

    anchor: str
    title: str
    body: str


def esc(value: object) -> str:
    """`value` as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def number(value: float | int | None, digits: int = 4) -> str:
    """Integers with thousands separators, floats with `digits` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def percent(part: float, whole: float) -> NumberText:
    """`part / whole` as a percentage with two decimals ("—" for an empty whole)."""
    return NumberText(f"{100.0 * part / whole:.2f}%" if whole else "—")


def long_name(text: str) -> Raw:
    """A long snake_case name that may wrap after its underscores."""
    return Raw(f'<span class="name">{esc(text).replace("_", "_<wbr>")}</span>')


def badge(text: str, kind: str) -> Raw:
    """A coloured status label; `kind` is ok, warn or fail."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def cell(value: object, tag: str = "td") -> str:
    """One table cell: numbers right-aligned and formatted, Raw as is, the rest escaped."""
    if isinstance(value, Raw):
        return f"<{tag}>{value}</{tag}>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<{tag} class="num">{number(value)}</{tag}>'
    if value is None:
        return f'<{tag} class="num">—</{tag}>'
    if isinstance(value, NumberText):
        return f'<{tag} class="num">{esc(value)}</{tag}>'
    return f"<{tag}>{esc(value)}</{tag}>"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    table_id: str | None = None,
    row_ids: Sequence[str] | None = None,
    scroll: bool = False,
) -> Raw:
    """An HTML table; `row_ids` gives each row an id, so tests and links can find it."""
    head = "".join(cell(h, "th") for h in headers)
    body = []
    for i, row in enumerate(rows):
        row_id = f' id="{esc(row_ids[i])}"' if row_ids else ""
        body.append(f"<tr{row_id}>{''.join(cell(value) for value in row)}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    markup = f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return Raw(f'<div class="scroll">{markup}</div>' if scroll else markup)


def key_values(rows: Sequence[tuple[str, object]], *, table_id: str, row_ids: Sequence[str]) -> Raw:
    """A two-column table of named values, without a header row, values left-aligned."""
    body = "".join(
        f'<tr id="{esc(row_id)}"><th>{esc(name)}</th>{cell(value)}</tr>'
        for row_id, (name, value) in zip(row_ids, rows, strict=True)
    )
    return Raw(f'<table class="kv" id="{esc(table_id)}"><tbody>{body}</tbody></table>')


def svg_figure(figure: Figure, caption: str, alt: str | None = None) -> Raw:
    """A matplotlib figure as an inline SVG image (a data: URI, so figures never share ids)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dc-taxi-reports"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Raw(
        f'<figure><img src="data:image/svg+xml;base64,{encoded}" alt="{esc(alt or caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole HTML document: header, navigation to every section, the sections."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><div class="meta">{subtitle} · generated {generated}</div>'
        f"<nav>{nav}</nav></header><main>{body}</main>"
        '<footer class="meta"><p>Self-contained page: every figure and script is inline.</p>'
        "</footer></body></html>\n"
    )


def write_page(path: Path, document: str) -> Path:
    """Write a page, creating its folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
