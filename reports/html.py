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
a { color: #1f5fbf; }
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
/* A table wider than the page scrolls sideways; the shadows at its edges (CSS only: the white
   covers move with the content, the shadows stay) show there is more to the left or right. */
.wide { overflow-x: auto; max-width: 100%;
        background: linear-gradient(to right, #fff 30%, #fff0) left / 40px 100% no-repeat local,
                    linear-gradient(to left, #fff 30%, #fff0) right / 40px 100% no-repeat local,
                    radial-gradient(farthest-side at 0 50%, #0003, #0000)
                    left / 14px 100% no-repeat,
                    radial-gradient(farthest-side at 100% 50%, #0003, #0000)
                    right / 14px 100% no-repeat; }
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
.alert { background: #fbe0e0; border-left: 4px solid #c0392b; padding: 8px 12px; margin: 10px 0; }
ul.attention { list-style: none; padding: 0; margin: 0; }
ul.attention li { padding: 6px 0; border-bottom: 1px solid #e6e8ec; }
ul.attention li:last-child { border-bottom: none; }
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
    """Integers with thousands separators, floats with `digits` significant digits.

    The fallback for a number whose measure is not known; pages format what they know by what
    it measures (`count`, `coordinate`, `dollars`, `p_value`, ...).
    """
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def count(value: int | None) -> NumberText:
    """A count, with thousands separators: 106,207."""
    return NumberText("—" if value is None else f"{value:,}")


def fixed(value: float | None, decimals: int) -> NumberText:
    """A value with a fixed number of decimals: 2016.987 (a mean year has no separator)."""
    return NumberText("—" if value is None else f"{value:.{decimals}f}")


def significant(value: float | None, digits: int = 3) -> NumberText:
    """A value with `digits` significant digits, trailing zeros kept: 0.0520, 5.20e-05."""
    return NumberText("—" if value is None else f"{value:#.{digits}g}".rstrip("."))


def coordinate(value: float | None) -> NumberText:
    """Degrees of latitude or longitude to 5 decimals (about 1 m): 38.90012."""
    return fixed(value, 5)


def dollars(value: float | None, decimals: int = 3) -> NumberText:
    """An amount in dollars (a fare, an RMSE) to 2 or 3 decimals, without the sign: 10.051."""
    return fixed(value, decimals)


def p_value(value: float | None) -> NumberText:
    """A p-value to 3 significant digits: 0.0174, 0.872, 1.20e-10."""
    return significant(value, 3)


def percent(part: float, whole: float) -> NumberText:
    """`part / whole` as a percentage with two decimals ("—" for an empty whole)."""
    return NumberText(f"{100.0 * part / whole:.2f}%" if whole else "—")


def long_name(text: str) -> Raw:
    """A long snake_case name that may wrap after its underscores."""
    return Raw(f'<span class="name">{esc(text).replace("_", "_<wbr>")}</span>')


def badge(text: str, kind: str) -> Raw:
    """A coloured status label; `kind` is ok, warn or fail."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def is_number(value: object) -> bool:
    """Shown right-aligned: a number, preformatted number text or a missing value."""
    return isinstance(value, int | float | NumberText | None) and not isinstance(value, bool)


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


def header_cell(text: str, right: bool, breaks: bool) -> str:
    """A column header, right-aligned over a column of numbers."""
    label = long_name(text) if breaks else esc(text)
    return f'<th class="num">{label}</th>' if right else f"<th>{label}</th>"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    table_id: str | None = None,
    row_ids: Sequence[str] | None = None,
    header_breaks: bool = False,
) -> Raw:
    """An HTML table that scrolls sideways, visibly, when it is wider than the page.

    `row_ids` gives each row an id, so tests and links can find it; `header_breaks` lets
    snake_case headers wrap after their underscores, so many columns fit.
    """
    rows = list(rows)
    numeric = [is_number(value) for value in rows[0]] if rows else [False] * len(headers)
    head = "".join(
        header_cell(h, right, header_breaks) for h, right in zip(headers, numeric, strict=False)
    )
    body = []
    for i, row in enumerate(rows):
        row_id = f' id="{esc(row_ids[i])}"' if row_ids else ""
        body.append(f"<tr{row_id}>{''.join(cell(value) for value in row)}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    markup = f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return Raw(f'<div class="wide">{markup}</div>')


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
