"""Writes a comparison run's outputs: `report.json` (streamed), `junit.xml`, self-contained `report.html`.

compare/ (side-by-side comparison). The HTML page carries its own CSS, script and SVG charts and the data
it shows; it fetches nothing at view time. The terminal summary table is rendered here too.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from lxml import etree

from bridge.compare.matching import ONLY_BRIDGE, ONLY_LEGACY, Counts, Store

REPORT_VERSION = 1
DRILL_LIMIT = 3000  # entities shown with their fields in report.html (report.json has every difference)


@dataclass(frozen=True)
class RunInfo:
    mode: str
    legacy: str
    bridge: str
    min_parity: float | None = None


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _stream_list(out: IO[bytes], items: Any) -> None:
    out.write(b"[")
    first = True
    for item in items:
        if not first:
            out.write(b",\n")
        out.write(_dump(item))
        first = False
    out.write(b"]")


def summary(store: Store, info: RunInfo) -> dict[str, Any]:
    """Everything of report.json except the long lists (identifiers, differences)."""
    total = store.counts()
    return {
        "version": REPORT_VERSION,
        "mode": info.mode,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "legacy": info.legacy,
        "bridge": info.bridge,
        "parity": round(total.parity, 6),
        "min_parity": info.min_parity,
        "totals": total.as_json(),
        "by_function": {k: v.as_json() for k, v in store.counts_by("u.function").items()},
        "by_kind": {k: v.as_json() for k, v in store.counts_by("o.kind").items()},
        "by_region": {k: v.as_json() for k, v in store.counts_by("o.region").items()},
        "top_fields": store.top_fields(),
        "units": store.units(),
    }


def write_json(store: Store, head: Mapping[str, Any], path: Path) -> None:
    """report.json, the long lists streamed from the run's store (flat memory at any size)."""
    totals = head["totals"]
    with path.open("wb") as out:
        out.write(b"{")
        for key, value in head.items():
            if key == "totals":
                continue
            out.write(_dump(key) + b": " + _dump(value) + b",\n")
        out.write(b'"entities": {')
        out.write(f'"matched": {totals["matched"]}, "equal": {totals["equal"]}, '.encode())
        out.write(f'"different": {totals["different"]},\n"only_legacy": '.encode())
        _stream_list(out, store.entity_ids(ONLY_LEGACY))
        out.write(b',\n"only_bridge": ')
        _stream_list(out, store.entity_ids(ONLY_BRIDGE))
        out.write(b'},\n"differences": ')
        _stream_list(out, store.differences())
        out.write(b"}\n")


def write_junit(head: Mapping[str, Any], path: Path) -> None:
    """One test case per unit (request, archived pair, shadow record) or, for documents, per entity kind."""
    suite = etree.Element("testsuite", name=f"ror-bridge compare {head['mode']}")
    cases: list[tuple[str, str, dict[str, Any]]] = []
    if head["mode"] == "documents":
        cases = [(f"kind {kind}", "documents", counts) for kind, counts in head["by_kind"].items()]
    else:
        cases = [(unit["name"], unit["function"], unit) for unit in head["units"]]
    failures = 0
    for name, classname, counts in cases:
        case = etree.SubElement(suite, "testcase", name=name, classname=f"compare.{classname or 'unknown'}")
        problems = []
        if counts.get("problem"):
            problems.append(str(counts["problem"]))
        if counts["different"] or counts["only_legacy"] or counts["only_bridge"]:
            problems.append(
                f"parity {counts['parity']:.4f}: {counts['different']} different, "
                f"{counts['only_legacy']} only in legacy, {counts['only_bridge']} only in bridge"
            )
        if problems:
            failures += 1
            failure = etree.SubElement(case, "failure", message=problems[0])
            failure.text = "\n".join(problems)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    etree.ElementTree(suite).write(str(path), xml_declaration=True, encoding="utf-8", pretty_print=True)


def _bars(
    title: str, data: Mapping[str, Mapping[str, Any]], *, value: str = "parity", label: int = 190
) -> str:
    """A horizontal bar chart as inline SVG (no script, no network), scaled to its box."""
    rows = list(data.items())[:25]
    width, bar, gap = 640, 18, 6
    height = 30 + len(rows) * (bar + gap)
    parts = [
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" class="t">{html.escape(title)}</text>',
    ]
    largest = max((float(v[value]) for _, v in rows), default=1.0) or 1.0
    for index, (name, counts) in enumerate(rows):
        y = 28 + index * (bar + gap)
        amount = float(counts[value])
        share = amount if value == "parity" else amount / largest
        length = max(1.0, (width - label - 70) * share)
        colour = (
            "#2e7d32"
            if value == "parity" and amount >= 0.99
            else "#c62828"
            if value == "parity" and amount < 0.9
            else "#f9a825"
        )
        if value != "parity":
            colour = "#1565c0"
        shown = f"{amount * 100:.1f} %" if value == "parity" else f"{int(amount)}"
        shown_name = name if len(name) * 6.5 < label - 8 else "…" + name[-int((label - 8) / 6.5) + 1 :]
        parts.append(f'<text x="0" y="{y + 13}" class="l">{html.escape(shown_name)}</text>')
        parts.append(
            f'<rect x="{label}" y="{y}" width="{length:.1f}" height="{bar}" fill="{colour}" rx="3"/>'
        )
        parts.append(f'<text x="{label + length + 6:.1f}" y="{y + 13}" class="l">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#f6f7f9}
header{background:#123b63;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{padding:20px 28px;max-width:1400px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:12px 18px;box-shadow:0 1px 3px #0002;min-width:120px}
.card b{display:block;font-size:26px}.card span{color:#555;font-size:12px;text-transform:uppercase}
.card.parity b{color:#123b63}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 3px #0002;margin-bottom:16px}
h2{font-size:16px;margin:0 0 10px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e6ea;
vertical-align:top;word-break:break-word}
th{background:#eef1f5;font-weight:600}tr.ent{cursor:pointer}tr.ent:hover{background:#eef5ff}
.st-equal{color:#2e7d32}.st-different{color:#c62828}.st-only_legacy,.st-only_bridge{color:#ef6c00}
svg.chart .t{font-weight:600;font-size:13px}svg.chart .l{font-size:12px}
#search{width:100%;padding:8px 10px;font-size:14px;border:1px solid #bbb;border-radius:6px;margin-bottom:10px}
tr.diff td{background:#fdecea}.drill td.p{font-family:ui-monospace,monospace;font-size:12px}
.muted{color:#777}code{font-size:12px}
"""

_SCRIPT = """
(function(){
const data = JSON.parse(document.getElementById('report-data').textContent);
const body = document.getElementById('entities');
const search = document.getElementById('search');
const ENT = {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'};
function esc(s){return String(s==null?'':s).replace(/[&<>"]/g, c => ENT[c]);}
function sideBySide(e){
  const paths = [...new Set([...e.legacy.map(f=>f[0]), ...e.bridge.map(f=>f[0])])].sort();
  const differing = new Set(e.differing_paths);
  let rows = '';
  for (const p of paths){
    const l = e.legacy.filter(f=>f[0]===p).map(f=>esc(f[1])).join('<br>');
    const b = e.bridge.filter(f=>f[0]===p).map(f=>esc(f[1])).join('<br>');
    const cls = (differing.has(p) || e.status!=='different' && e.status!=='equal') ? ' class="diff"' : '';
    rows += `<tr${cls}><td class="p">${esc(p)}</td><td>${l}</td><td>${b}</td></tr>`;
  }
  return '<table class="drill"><thead><tr><th>field</th><th>legacy</th><th>bridge</th></tr></thead>' +
         `<tbody>${rows}</tbody></table>`;
}
function render(){
  const q = search.value.trim().toLowerCase();
  let html = '', shown = 0;
  data.entities.forEach((e, i) => {
    const text = [e.kind, e.region, e.status, e.legacy_entity, e.bridge_entity, e.unit,
                  ...e.differing_paths].join(' ').toLowerCase();
    if (q && !text.includes(q)) return;
    if (shown++ >= 500) return;
    html += `<tr class="ent" data-i="${i}"><td>${esc(e.bridge_entity||e.legacy_entity)}</td>` +
            `<td>${esc(e.kind)}</td><td>${esc(e.region)}</td><td>${esc(e.function)}</td>` +
            `<td class="st-${e.status}">${esc(e.status)}</td>` +
            `<td>${e.differing_paths.length}</td></tr><tr class="detail" hidden><td colspan="6"></td></tr>`;
  });
  body.innerHTML = html || '<tr><td colspan="6" class="muted">no entity matches</td></tr>';
  document.getElementById('shown').textContent = Math.min(shown, 500) + ' of ' + shown + ' shown';
}
body.addEventListener('click', ev => {
  const row = ev.target.closest('tr.ent'); if (!row) return;
  const detail = row.nextElementSibling;
  if (detail.hidden) { detail.firstElementChild.innerHTML = sideBySide(data.entities[+row.dataset.i]); }
  detail.hidden = !detail.hidden;
});
search.addEventListener('input', render);
render();
})();
"""


def _table(title: str, data: Mapping[str, Mapping[str, Any]], label: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{c['matched']}</td><td>{c['equal']}</td><td>{c['different']}</td>"
        f"<td>{c['only_legacy']}</td><td>{c['only_bridge']}</td>"
        f"<td><b>{c['parity'] * 100:.2f} %</b></td></tr>"
        for name, c in data.items()
    )
    return (
        f"<h2>{html.escape(title)}</h2><table><thead><tr><th>{label}</th><th>matched</th><th>equal</th>"
        f"<th>different</th><th>only legacy</th><th>only bridge</th><th>parity</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def write_html(store: Store, head: Mapping[str, Any], path: Path) -> None:
    totals = head["totals"]
    summary = {k: v for k, v in head.items() if k != "units"}
    everything = totals["matched"] + totals["only_legacy"] + totals["only_bridge"]
    embedded_count = min(DRILL_LIMIT, everything)
    top = {f"{t['path']}": {"count": t["count"]} for t in head["top_fields"]}
    cards = "".join(
        f'<div class="card{" parity" if key == "parity" else ""}" data-key="{key}"><span>{label}</span>'
        f"<b>{value}</b></div>"
        for key, label, value in [
            ("parity", "parity", f"{head['parity'] * 100:.2f} %"),
            ("matched", "matched", totals["matched"]),
            ("equal", "equal", totals["equal"]),
            ("different", "different", totals["different"]),
            ("only_legacy", "only legacy", totals["only_legacy"]),
            ("only_bridge", "only bridge", totals["only_bridge"]),
        ]
    )
    units = "".join(
        f"<tr><td>{html.escape(u['name'])}</td><td>{html.escape(u['function'])}</td>"
        f"<td>{html.escape(u['legacy_status'] or '')}</td><td>{html.escape(u['bridge_status'] or '')}</td>"
        f"<td>{u['parity'] * 100:.2f} %</td><td>{u['differences']}</td>"
        f"<td>{html.escape(u['problem'] or '')}</td></tr>"
        for u in head["units"][:1000]
    )
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ror-bridge compare: {head["parity"] * 100:.2f} % parity</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body><header><h1>Legacy CSD service vs ROR CSD bridge</h1>
<p>{html.escape(head["mode"])}: legacy <code>{html.escape(head["legacy"])}</code>, bridge
<code>{html.escape(head["bridge"])}</code>, {html.escape(head["generated"])}.
Parity = equal / (matched + only legacy + only bridge).</p></header>
<main><div class="cards">{cards}</div>
<div class="grid"><section>{_bars("Parity per entity kind", head["by_kind"])}</section>
<section>{_bars("Parity per function", head["by_function"])}</section>
<section>{_bars("Parity per region", head["by_region"])}</section>
<section>{_bars("Most frequent differing fields", top, value="count", label=330)}</section></div>
<section>{_table("Per entity kind", head["by_kind"], "kind")}</section>
<section>{_table("Per function", head["by_function"], "function")}</section>
<section>{_table("Per region", head["by_region"], "region")}</section>
<section><h2>Requests</h2><table><thead><tr><th>unit</th><th>function</th><th>legacy</th><th>bridge</th>
<th>parity</th><th>differences</th><th>problem</th></tr></thead><tbody>{units}</tbody></table></section>
<section><h2>Entities <span class="muted" id="shown"></span></h2>
<input id="search" type="search" placeholder="Search an entityID, a kind, a region, a field path…">
<table><thead><tr><th>entity</th><th>kind</th><th>region</th><th>function</th><th>status</th>
<th>differing fields</th></tr></thead><tbody id="entities"></tbody></table>
<p class="muted">Click an entity to see its fields side by side. Differing and unmatched entities first;
{embedded_count} of {everything} entities embedded
(every difference is in report.json).</p></section></main>
<script type="application/json" id="report-data">
{{"summary": {_json_in_html(summary)}, "entities": [@@ENTITIES@@]}}</script>
<script>{_SCRIPT}</script></body></html>
"""
    before, after = document.rsplit("@@ENTITIES@@", 1)
    with path.open("w", encoding="utf-8") as out:  # the entities streamed: flat memory whatever the limit
        out.write(before)
        for index, entity in enumerate(store.drill(DRILL_LIMIT)):
            out.write(("," if index else "") + _json_in_html(entity))
        out.write(after)


def _json_in_html(value: Any) -> str:
    # Inside <script type="application/json"> only "</" could end the element early.
    return _dump(value).decode().replace("</", "<\\/")


def write_reports(store: Store, info: RunInfo, out: Path) -> dict[str, Any]:
    """report.json, junit.xml and report.html into `out`; the summary (report.json without the lists)."""
    out.mkdir(parents=True, exist_ok=True)
    head = summary(store, info)
    write_json(store, head, out / "report.json")
    write_junit(head, out / "junit.xml")
    write_html(store, head, out / "report.html")
    return head


def summary_table(head: Mapping[str, Any]) -> str:
    """The terminal's final table: one line per kind, per function, then the total."""
    lines = [f"{'':<28}{'matched':>9}{'equal':>9}{'differ':>9}{'only L':>9}{'only B':>9}{'parity':>10}"]

    def line(name: str, c: Mapping[str, Any]) -> str:
        return (
            f"{name[:28]:<28}{c['matched']:>9}{c['equal']:>9}{c['different']:>9}{c['only_legacy']:>9}"
            f"{c['only_bridge']:>9}{c['parity'] * 100:>9.2f}%"
        )

    for title, key in (("kind", "by_kind"), ("function", "by_function"), ("region", "by_region")):
        for name, counts in head[key].items():
            lines.append(line(f"{title} {name}", counts))
    lines.append(line("TOTAL", head["totals"]))
    for top in head["top_fields"][:5]:
        lines.append(f"  {top['count']:>7} × {top['path']}")
    return "\n".join(lines)


def counts_of(head: Mapping[str, Any]) -> Counts:
    totals = head["totals"]
    return Counts(totals["matched"], totals["equal"], totals["only_legacy"], totals["only_bridge"])
