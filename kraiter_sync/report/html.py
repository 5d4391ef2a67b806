"""A run report as one static HTML file that works offline.

:func:`render_html` is pure: a :class:`~kraiter_sync.report.contents.RunReport` in, a
page out. The page embeds plotly.js once (no CDN, no network: a machine or a CI job
without internet opens it), and draws:

* the rows of the run as a Sankey diagram (rows read per kind → sent / skipped /
  duplicate / rejected / not sent), with the exact figures in a table beside it;
* requests per second over time, answers stacked by class, 429s and retries marked,
  the totals in the chart's title;
* rejects by rule, with a few sample rows each (see ``contents``).

Every string that comes from data (file names, arguments, rule codes, messages, sample
values) is HTML-escaped, and none goes into a figure (their labels are our words and
numbers). plotly is the optional extra ``kraiter-sync[report]``; :func:`require_plotly`
says how to install it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from kraiter_sync import __version__
from kraiter_sync.api.timeline import series_of
from kraiter_sync.errors import ConfigError, StateError
from kraiter_sync.files import atomic_write
from kraiter_sync.report.contents import GROUPS, OUTCOMES, RunReport

__all__ = ["INSTALL_HINT", "render_html", "require_plotly", "write_html"]

INSTALL_HINT = 'pip install "kraiter-sync[report]"'

_GROUP_COLOURS = {
    "sent": "#2ca02c",
    "skipped": "#9ecae1",
    "duplicate": "#bdbdbd",
    "rejected": "#d62728",
    "not sent": "#ff7f0e",
}
_CLASS_TRACES = (  # (series, legend, colour) stacked as bars: every answer, by class
    ("2xx", "2xx", "#2ca02c"),
    ("429", "429", "#e377c2"),
    ("4xx", "4xx (not 429)", "#ff7f0e"),
    ("5xx", "5xx", "#d62728"),
    ("other", "other status", "#7f7f7f"),
    ("transport", "no answer (cut, timeout)", "#8c564b"),
)
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_SANKEY_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.note { color: #8a5a00; } .samples td { font-size: .9em; }
code, .mono { font-family: ui-monospace, monospace; word-break: break-all; }
#rejects-table code { white-space: nowrap; word-break: normal; }
footer { margin-top: 3em; color: #777; font-size: .85em; }
"""


def require_plotly() -> None:
    """A ConfigError naming the pip command that installs plotly, when it is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        msg = f"the HTML report needs plotly, which is not installed: {INSTALL_HINT}"
        raise ConfigError(msg) from None


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _figure_html(
    figure: Any, div_id: str, height: int, config: dict[str, Any] = _PLOT_CONFIG
) -> str:
    import plotly.io as pio

    html: str = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=config,
        default_height=f"{height}px",
    )
    return html


# -- sections --------------------------------------------------------------------------


def _header(report: RunReport) -> str:
    duration = (
        report.duration_s
        if report.duration_s is not None
        else (report.finished_at - report.started_at if report.finished_at else None)
    )
    rows = [
        ("run", str(report.run_id), "run-id"),
        ("command", report.command, "command"),
        ("status", report.status, "status"),
        ("exit code", "-" if report.exit_code is None else str(report.exit_code), "exit-code"),
        ("Kraiter", report.host, "host"),
        ("tenant", report.tenant or "-", "tenant"),
        ("started", _when(report.started_at), "started"),
        ("finished", _when(report.finished_at), "finished"),
        ("duration", "-" if duration is None else f"{duration:,.1f} s", "duration"),
    ]
    items = "".join(
        f'<dt>{escape(label)}</dt><dd id="meta-{key}">{escape(value)}</dd>'
        for label, value, key in rows
    )
    args = "".join(
        f"<tr><th>{escape(str(name))}</th><td class=mono>{escape(_arg(value))}</td></tr>"
        for name, value in sorted(report.args.items())
        if value not in (None, False, [], "")
    )
    args_table = f"<h2>Arguments</h2><table id=args>{args}</table>" if args else ""
    return (
        f"<h1>kraiter-sync run {report.run_id}: {escape(report.command)}</h1>"
        f'<dl class="meta" id="run-meta">{items}</dl>{args_table}'
    )


def _arg(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _sankey(report: RunReport) -> str:
    import plotly.graph_objects as go

    links = report.group_totals()
    kinds = [kind for kind in report.kinds if links.get(kind)]
    groups = [g for g in GROUPS if any(g in links[k] for k in kinds)]
    if not kinds:
        return ""
    totals = {g: sum(links[k].get(g, 0) for k in kinds) for g in groups}
    pending_label = "would send" if report.dry_run else "not sent"
    labels = [f"{kind} read: {report.kinds[kind]['read']:,}" for kind in kinds] + [
        f"{pending_label if g == 'not sent' else g}: {totals[g]:,}" for g in groups
    ]
    source, target, value = [], [], []
    for i, kind in enumerate(kinds):
        for j, group in enumerate(groups):
            if links[kind].get(group):
                source.append(i)
                target.append(len(kinds) + j)
                value.append(links[kind][group])
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": labels,
                "pad": 18,
                "thickness": 18,
                "color": ["#4a6fa5"] * len(kinds) + [_GROUP_COLOURS[g] for g in groups],
            },
            link={"source": source, "target": target, "value": value},
        )
    )
    figure.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, font={"size": 13})
    return _figure_html(figure, "counts-chart", 360, _SANKEY_CONFIG)


def _counts_table(report: RunReport) -> str:
    kinds = list(report.kinds)
    head = "".join(f'<th class="n">{escape(k)}</th>' for k in kinds)
    rows = [
        "<tr><th>read</th>"
        + "".join(
            f'<td class="n" data-kind="{k}" data-outcome="read">{report.kinds[k]["read"]:,}</td>'
            for k in kinds
        )
        + "</tr>"
    ]
    for name, label, group in OUTCOMES:
        if not any(report.kinds[k].get(name) for k in kinds):
            continue
        shown = "would send" if (name == "pending" and report.dry_run) else label
        cells = "".join(
            f'<td class="n" data-kind="{k}" data-outcome="{name}">{report.kinds[k][name]:,}</td>'
            for k in kinds
        )
        rows.append(f"<tr><th>{escape(shown)} <small>({escape(group)})</small></th>{cells}</tr>")
    return f'<table id="counts-table"><tr><th>rows</th>{head}</tr>{"".join(rows)}</table>'


def _other_counts(report: RunReport) -> str:
    import plotly.graph_objects as go

    names = list(report.other_counts)
    values = [report.other_counts[n] for n in names]
    figure = go.Figure(go.Bar(x=names, y=values, marker_color="#4a6fa5"))
    figure.update_layout(margin={"l": 40, "r": 10, "t": 10, "b": 40})
    rows = "".join(
        f'<tr><th>{escape(n)}</th><td class="n" data-count="{escape(n)}">{_n(v)}</td></tr>'
        for n, v in zip(names, values, strict=True)
    )
    return _figure_html(figure, "counts-chart", 320) + f'<table id="counts-table">{rows}</table>'


def _rows_section(report: RunReport) -> str:
    if report.kinds:
        body = _sankey(report) + _counts_table(report)
    elif report.other_counts:
        body = _other_counts(report)
    else:
        body = "<p>This run recorded no counts.</p>"
    return f'<section id="counts"><h2>Rows</h2>{body}</section>'


def _totals_line(report: RunReport) -> str:
    parts = [
        (report.requests, "requests", "requests"),
        (report.rate_limited, "rate_limited", "answered 429"),
        (report.retries, "retries", "retries"),
    ]
    shown = [
        f'<span data-total="{key}">{value:,}</span> {label}'
        for value, key, label in parts
        if value is not None
    ]
    return f'<p id="request-totals">{", ".join(shown)}</p>' if shown else ""


def _timeline(report: RunReport) -> str:
    if report.timeline is None:
        return (
            f'<section id="requests"><h2>Requests</h2>{_totals_line(report)}'
            "<p>No request timeline was recorded for this run (no requests were sent, or it "
            "was recorded by an older kraiter-sync).</p></section>"
        )
    import plotly.graph_objects as go

    width = float(report.timeline.get("bucket_seconds") or 1.0)
    start = float(report.timeline.get("started_at") or report.started_at)
    series = series_of(report.timeline)
    length = len(series["requests"])
    x = [
        datetime.fromtimestamp(start + i * width, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        for i in range(length)
    ]

    def per_s(name: str) -> list[float]:
        return [round(v / width, 3) for v in series[name]]

    figure = go.Figure()
    for name, legend, colour in _CLASS_TRACES:
        if any(series[name]):
            figure.add_trace(go.Bar(x=x, y=per_s(name), name=f"{legend}/s", marker_color=colour))
    figure.add_trace(
        go.Scatter(
            x=x,
            y=per_s("requests"),
            name="requests sent/s",
            mode="lines",
            line={"color": "#1f3b73", "width": 2},
        )
    )
    # 429s and retries are rare beside the answers: marked on their own axis (right)
    for name, legend, colour, symbol in (
        ("429", "429 answers/s", "#d62728", "x"),
        ("retries", "retries/s", "#6a3d9a", "triangle-up"),
    ):
        points = [(t, v) for t, v in zip(x, per_s(name), strict=True) if v]
        if points:
            figure.add_trace(
                go.Scatter(
                    x=[t for t, _ in points],
                    y=[v for _, v in points],
                    name=legend,
                    mode="markers",
                    marker={"color": colour, "symbol": symbol, "size": 9},
                    yaxis="y2",
                )
            )
    totals = {name: sum(values) for name, values in series.items()}
    title = (
        f"{totals['requests']:,} requests, {totals['429']:,} answered 429, "
        f"{totals['retries']:,} retries (buckets of {_n(width)} s)"
    )
    figure.update_layout(
        barmode="stack",
        title={"text": title, "font": {"size": 14}},
        xaxis={"title": {"text": "time (UTC)"}},
        yaxis={"title": {"text": "requests and answers per second"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "429s and retries per second"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 60, "t": 50, "b": 40},
    )
    return (
        f'<section id="requests"><h2>Requests</h2>{_totals_line(report)}'
        f"{_figure_html(figure, 'requests-chart', 420)}</section>"
    )


def _rejects(report: RunReport) -> str:
    note = f'<p class="note">{escape(report.rejects_note)}</p>' if report.rejects_note else ""
    where = (
        f"<p>Rejects file: <code>{escape(report.rejects_file)}</code></p>"
        if report.rejects_file
        else ""
    )
    if not report.rejects:
        return f'<section id="rejects"><h2>Rejects by rule</h2>{where}{note}<p>None.</p></section>'
    rows = []
    for item in report.rejects:
        samples = ""
        if item.samples:
            columns = list(dict.fromkeys(c for s in item.samples for c in s))
            head = "".join(f"<th>{escape(c)}</th>" for c in columns)
            body = "".join(
                "<tr>"
                + "".join(f"<td class=mono>{escape(s.get(c, ''))}</td>" for c in columns)
                + "</tr>"
                for s in item.samples
            )
            samples = f'<table class="samples"><tr>{head}</tr>{body}</table>'
        rows.append(
            f"<tr><td><code>{escape(item.rule)}</code></td><td>{escape(item.stage)}</td>"
            f'<td class="n" data-rule="{escape(item.rule)}">{item.count:,}</td>'
            f"<td>{samples}</td></tr>"
        )
    table = (
        '<table id="rejects-table"><tr><th>rule</th><th>stage</th><th class="n">rows</th>'
        f"<th>sample rows</th></tr>{''.join(rows)}</table>"
    )
    return f'<section id="rejects"><h2>Rejects by rule</h2>{where}{note}{table}</section>'


def render_html(report: RunReport) -> str:
    """The whole page: static, self-contained (plotly.js inlined), offline."""
    require_plotly()
    from plotly.offline import get_plotlyjs

    body = (
        _header(report)
        + _rows_section(report)
        + _timeline(report)
        + _rejects(report)
        + f"<footer>kraiter-sync {escape(__version__)}, report written "
        f"{_when(time.time())}</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kraiter-sync run {report.run_id}: {escape(report.command)}</title>"
        f'<style>{_CSS}</style><script type="text/javascript">{get_plotlyjs()}</script>'
        f"</head><body>{body}</body></html>\n"
    )


def write_html(report: RunReport, path: str | Path) -> Path:
    """Write the page to ``path`` atomically (a temporary file, fsync, rename)."""
    page = render_html(report).encode()
    target = Path(path)
    try:
        atomic_write(target, page)
    except OSError as exc:
        msg = f"cannot write the report {target}: {exc.strerror or exc}; pass a writable path"
        raise StateError(msg) from exc
    return target
