"""The drift report as ONE self-contained HTML file: no script, no stylesheet, no font to fetch.

Plots are drawn by matplotlib (already the trainer's plotting library, kept by a large team, and
able to draw without a display) as inline SVG: text and vector shapes in the page itself, so the
report opens offline, from a mail attachment or a CI artifact, and stays sharp when zoomed. A
JavaScript charting library would have to be inlined whole (plotly.js is ~3.5 MB) to work offline.
One plot per column, reference against current, drifting columns first, then by PSI.
"""

from __future__ import annotations

import html
import io
from typing import Any

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}.drift{background:#fde2e1}.redacted{color:#888}
section{margin:1.5em 0;border-top:1px solid #ddd}figure{margin:0}svg{max-width:100%;height:auto}
.badge{display:inline-block;padding:0 .5em;border-radius:.5em;background:#c62828;color:#fff;font-size:.8em}
"""


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _svg(name: str, data: dict[str, Any], drift: bool) -> str:
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.8), dpi=72)
    ax = fig.add_subplot()
    if "labels" in data:
        positions = range(len(data["labels"]))
        ax.bar([p - 0.2 for p in positions], data["reference"], width=0.4, label="reference", color="#90a4ae")
        ax.bar([p + 0.2 for p in positions], data["current"], width=0.4, label="current", color="#e65100")
        ax.set_xticks(list(positions), [label[:12] for label in data["labels"]], rotation=30, fontsize=8)
    else:
        edges = data["edges"]
        ax.stairs(data["reference"], edges, fill=True, alpha=0.5, label="reference", color="#90a4ae")
        ax.stairs(data["current"], edges, linewidth=1.6, label="current", color="#e65100")
    ax.set_ylabel("share of rows")
    ax.set_title(f"{name}{' (drift)' if drift else ''}", fontsize=10)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.2)  # fixed: tight_layout draws twice
    buffer = io.StringIO()
    # Text as SVG text, not glyph outlines: a third of the size, and a reader can search and copy it.
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG is inline


def _row(name: str, column: dict[str, Any]) -> str:
    if column.get("redacted"):
        return f'<tr class="redacted"><td>{html.escape(name)}</td><td colspan="6">redacted</td></tr>'
    cls = ' class="drift"' if column["drift"] else ""
    cells = [
        html.escape(name),
        "yes" if column["drift"] else "no",
        _number(column["psi"]),
        _number(column.get("test")),
        _number(column["p_value"]),
        _number(column.get("null_rate")),
        _number(column.get("reference_null_rate")),
    ]
    return f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _order(columns: dict[str, Any]) -> list[str]:
    return sorted(columns, key=lambda n: (not columns[n]["drift"], -(columns[n].get("psi") or 0.0), n))


def render(report: dict[str, Any], plots: dict[str, Any]) -> str:
    """The HTML page of a report (report.build's two results)."""
    features = report["features"]
    outputs = report["prediction"]["columns"]
    head = "<tr><th>column</th><th>drift</th><th>PSI</th><th>test</th><th>p-value</th><th>null rate</th>"
    head += "<th>reference null rate</th></tr>"
    title = f"Drift of {report['model']} version {report['version']}"
    status = '<span class="badge">drift</span>' if report["drift"] else "no drift"
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}: {status}</h1>",
        f"<p>{report['rows']} scored rows and {report['refused']} refused requests"
        f" (refusal rate {_number(report['refusal_rate'])}) logged from {_number(report['first_record'])}"
        f" to {_number(report['last_record'])}, against a reference of {report['reference_rows']} rows."
        f" A column drifts when its test's p-value is below {report['thresholds']['p_value']} and its"
        f" PSI at least {report['thresholds']['psi']}.</p>",
        "<h2>Features</h2><table>",
        head,
        *(_row(name, features[name]) for name in _order(features)),
        "</table><h2>Prediction</h2><table>",
        head,
        *(_row(name, outputs[name]) for name in _order(outputs)),
        "</table>",
    ]
    for name in [*_order(features), *_order(outputs)]:
        column = features.get(name) or outputs[name]
        if name not in plots:
            continue
        parts.append(f'<section id="plot-{html.escape(name)}" class="plot"><h3>{html.escape(name)}</h3><figure>')
        parts.append(_svg(name, plots[name], column["drift"]))
        parts.append("</figure></section>")
    parts.append("</body></html>")
    return "\n".join(parts)
