"""The HTML, CSS and JavaScript of ``sweep report`` (see ``sweep.report``): one page, no requests.

The page reads its state from the URL hash (``#optimizer=adam&seed=1`` selects a facet;
``#region=ix0,iy0,ix1,iy1`` selects map cells as a drag would; ``#hover=ix,iy`` shows a cell's
tooltip as the mouse would), so every state can be opened
and screenshotted without clicking. Once drawn it sets ``data-ready-ms`` (ms since navigation
start) and ``data-violations`` (blocked requests) on ``<body>`` and the map's place on the
canvas (``data-left``, ``data-top``, ``data-scale``, ``data-facet``).
"""
from __future__ import annotations

import html

from .plot import NEVER_COLOR

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #ddd}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
canvas{image-rendering:pixelated;display:block;border:1px solid #999}
.wrap{position:relative}.frame{display:flex}.yl{display:flex;flex-direction:column;justify-content:space-between;
font-size:11px;text-align:right;padding-right:4px;color:#444}.xl{display:flex;justify-content:space-between;font-size:11px;color:#444}
.cap{max-width:560px}#box{position:absolute;border:1px dashed #000;pointer-events:none;display:none}
#tip{position:fixed;background:#fff;border:1px solid #888;padding:4px 6px;font-size:12px;pointer-events:none;
display:none;white-space:pre;z-index:9}
.lg span{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border:1px solid #666}
.lg div{margin:2px 0}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:8px;overflow:auto;max-height:360px;font-size:12px}
.ax{font-size:12px;color:#555}.note{color:#a33}
table.fr{border-collapse:collapse;font-size:12px}table.fr td,table.fr th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}
.bar{display:flex;width:220px;height:12px;border:1px solid #999}.bar span{display:block;height:100%}
table.pv td{padding:1px 8px;font-size:12px}
"""

JS = r"""
"use strict";
let violations = 0;
document.addEventListener('securitypolicyviolation', () => { violations++; document.body.dataset.violations = violations; });
const D = JSON.parse(document.getElementById('data').textContent);
const G = D.grid, AX = D.axes, NEVER_RGB = D.never;
function bytes(s) { const b = atob(s), u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; }
function arr(f) { const u = bytes(f.data); return f.type === 'u1' ? u : f.type === 'f4' ? new Float32Array(u.buffer) : f.type === 'i2' ? new Int16Array(u.buffer) : new Int32Array(u.buffer); }
const codes = bytes(G.outcome), fields = G.fields.map(f => ({...f, v: arr(f)})), rep = G.rep ? arr(G.rep) : null;
const NX = G.nx, NY = G.ny, FX = AX[G.x].values.length, FY = AX[G.y].values.length, CELLS = NX * NY;
const RGB = D.outcomes.map(o => [1, 3, 5].map(i => parseInt(o.color.slice(i, i + 2), 16)));
const S = Math.max(1, Math.floor(512 / Math.max(NX, NY)));
const sel = {}; G.facets.forEach(d => sel[d] = 0);
let region = null;
const $ = id => document.getElementById(id);
function fmt(v) { return typeof v === 'string' ? v : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4)); }
function num(v) { return String(+v.toPrecision(6)); }
function facetIndex() { let k = 0; G.facets.forEach(d => { k = k * AX[d].values.length + sel[d]; }); return k; }
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  G.facets.forEach(d => { if (h.has(d)) { const i = AX[d].values.map(String).indexOf(h.get(d)); if (i < 0) { const n = +h.get(d); const j = AX[d].values.findIndex(v => Math.abs(v - n) <= 1e-9 * Math.max(1, Math.abs(n))); if (j >= 0) sel[d] = j; } else sel[d] = i; } });
  region = h.has('region') ? h.get('region').split(',').map(Number) : null;
}
function writeHash() {
  const h = new URLSearchParams(); G.facets.forEach(d => h.set(d, String(AX[d].values[sel[d]])));
  if (region) h.set('region', region.join(','));
  history.replaceState(null, '', '#' + h.toString());
}
function paint(canvas, color) {
  canvas.width = NX * S; canvas.height = NY * S;
  const ctx = canvas.getContext('2d'), img = ctx.createImageData(NX * S, NY * S), p = img.data, base = facetIndex() * CELLS;
  for (let r = 0; r < NY * S; r++) { const iy = NY - 1 - Math.floor(r / S);
    for (let c = 0; c < NX * S; c++) { const k = base + iy * NX + Math.floor(c / S), q = (r * NX * S + c) * 4, rgb = color(k);
      p[q] = rgb[0]; p[q + 1] = rgb[1]; p[q + 2] = rgb[2]; p[q + 3] = 255; } }
  ctx.putImageData(img, 0, 0);
}
const VIR = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) { t = Math.min(1, Math.max(0, t)) * 4; const i = Math.min(3, Math.floor(t)), f = t - i; return VIR[i].map((a, j) => Math.round(a + f * (VIR[i + 1][j] - a))); }
function drawMaps() {
  const base = facetIndex() * CELLS, m = $('map');
  paint(m, k => RGB[codes[k]]);
  const r = m.getBoundingClientRect();
  Object.assign(m.dataset, {left: (r.left + 1 + scrollX).toFixed(0), top: (r.top + 1 + scrollY).toFixed(0), scale: S, facet: facetIndex()});
  const counts = G.counts[facetIndex()], total = counts.reduce((a, b) => a + b, 0);
  $('legend').innerHTML = D.outcomes.map((o, i) => o.code < 0 && !counts[i] ? '' : `<div title="${o.meaning}"><span style="background:${o.color}"></span>${o.code} ${o.name}: ${counts[i].toLocaleString('en')} (${(100 * counts[i] / total).toFixed(1)}%)</div>`).join('') + '<div class="ax">cells of this facet, every cell counted</div>';
  const cs = fields.find(f => f.name === 'converge_step');
  if (cs) { let lo = Infinity, hi = -Infinity; for (let k = 0; k < CELLS; k++) { const v = cs.v[base + k]; if (v >= 0) { lo = Math.min(lo, Math.max(v, 1)); hi = Math.max(hi, Math.max(v, 1)); } }
    const a = Math.log(lo), b = Math.log(hi > lo ? hi : lo * 10);
    paint($('conv'), k => cs.v[k] < 0 ? NEVER_RGB : viridis((Math.log(Math.max(cs.v[k], 1)) - a) / (b - a)));
    $('convlegend').textContent = isFinite(lo) ? `steps to converge, log colour scale: ${lo} (dark) to ${hi} (yellow); grey: never converged` : 'no run converged in this facet (all grey)'; }
  const fd = D.dimension[facetIndex()];
  $('dim').textContent = fd ? (fd.d === null ? 'no boundary in this facet' : `box-counting dimension of the outcome boundary in this facet: ${fd.d.toFixed(3)} ± ${fd.se === null ? 'n/a' : fd.se.toFixed(3)} (box sides ${fd.sizes.join(', ')} cells; boxes ${fd.counts.join(', ')}; a smooth curve gives 1, full resolution)`) : 'box-counting dimension: not computed (over 64 facets or under 8 cells a side)';
  $('facetname').textContent = G.facets.length ? G.facets.map(d => `${d}=${AX[d].values[sel[d]]}`).join(', ') : '';
  showRegion(); drawTraj();
}
function cellOf(e) { const r = $('map').getBoundingClientRect(); const ix = Math.floor((e.clientX - r.left - 1) / S), iy = NY - 1 - Math.floor((e.clientY - r.top - 1) / S);
  return ix >= 0 && ix < NX && iy >= 0 && iy < NY ? [ix, iy] : null; }
function origRange(i, n, full) { const f = G.block; return [i * f, Math.min((i + 1) * f, full) - 1]; }
function tip(e) { tipAt(cellOf(e), e.clientX, e.clientY); }
function tipAt(c, cx, cy) { const t = $('tip'); if (!c) { t.style.display = 'none'; return; }
  const k = facetIndex() * CELLS + c[1] * NX + c[0]; let ix = c[0], iy = c[1];
  if (rep) { ix = c[0] * G.block + rep[k] % G.block; iy = c[1] * G.block + Math.floor(rep[k] / G.block); }
  const lines = [`${G.x} = ${fmt(AX[G.x].values[ix])}`, `${G.y} = ${fmt(AX[G.y].values[iy])}`, ...G.facets.map(d => `${d} = ${fmt(AX[d].values[sel[d]])}`), `outcome: ${D.outcomes[codes[k]].name}`];
  fields.forEach(f => { const v = f.v[k]; lines.push(`${f.label}: ${f.type === 'f4' ? fmt(v) : v < 0 ? 'never (-1)' : v}`); });
  if (rep) lines.push(`(one ${G.block}x${G.block} block: its most common outcome; values of cell (${ix}, ${iy}))`);
  t.textContent = lines.join('\n'); t.style.display = 'block'; t.style.left = (cx + 14) + 'px'; t.style.top = (cy + 10) + 'px'; }
function axisSet(d, lo, hi) { const a = AX[d], n = a.values.length, v0 = a.values[lo], v1 = a.values[hi];
  if (a.spacing === 'log' && v0 > 0) return `--set 'axes.${d}={ logspace = [${num(Math.log10(v0))}, ${num(Math.log10(v1))}, ${n}] }'`;
  return `--set 'axes.${d}={ linspace = [${num(v0)}, ${num(v1)}, ${n}] }'`; }
function showRegion() { const box = $('box');
  if (!region) { box.style.display = 'none'; $('cmd').textContent = 'drag a rectangle on the basin map to get the command that computes it at higher resolution'; return; }
  const [a, b, c, d] = region, x0 = Math.min(a, c), x1 = Math.max(a, c), y0 = Math.min(b, d), y1 = Math.max(b, d);
  Object.assign(box.style, {display: 'block', left: (1 + x0 * S) + 'px', top: (1 + (NY - 1 - y1) * S) + 'px', width: ((x1 - x0 + 1) * S) + 'px', height: ((y1 - y0 + 1) * S) + 'px'});
  const xs = [origRange(x0, NX, FX)[0], origRange(x1, NX, FX)[1]], ys = [origRange(y0, NY, FY)[0], origRange(y1, NY, FY)[1]];
  const sets = [axisSet(G.x, xs[0], xs[1]), axisSet(G.y, ys[0], ys[1])];
  const pin = G.facets.map(f => { const v = AX[f].values[sel[f]]; return `--set 'axes.${f}=[${typeof v === 'string' ? JSON.stringify(v) : num(v)}]'`; });
  $('cmd').textContent = `# ${G.x} in [${fmt(AX[G.x].values[xs[0]])}, ${fmt(AX[G.x].values[xs[1]])}], ${G.y} in [${fmt(AX[G.y].values[ys[0]])}, ${fmt(AX[G.y].values[ys[1]])}] at the full grid's ${FX} x ${FY} cells` + (pin.length ? ', this facet only' : '') +
    `\nsweep run spec.toml ${sets.join(' ')} ${pin.join(' ')} --out region.nc\n# or refine its boundary adaptively:\nsweep refine ${D.prov.file} --x ${G.x} --y ${G.y} ${sets.join(' ')} ${pin.join(' ')} --levels 4`.replace(/  +/g, ' ');
}
function drawTraj() { const T = D.trajectories; if (!T) return; const cv = $('traj'), W = cv.width, H = cv.height, ctx = cv.getContext('2d');
  const X = arr({type: 'f4', data: T.xs}), Y = arr({type: 'f4', data: T.ys}), C = bytes(T.codes);
  const px = v => (v - T.lo[0]) / (T.hi[0] - T.lo[0]) * W, py = v => H - (v - T.lo[1]) / (T.hi[1] - T.lo[1]) * H;
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, W, H);
  if (T.bands) { const B = T.bands, b = bytes(B.data), n = B.n, img = ctx.createImageData(W, H), p = img.data;
    const at = (i, j) => b[Math.min(n - 1, Math.max(0, j)) * n + Math.min(n - 1, Math.max(0, i))];
    for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) { const i = Math.floor(c / W * n), j = Math.floor((H - 1 - r) / H * n), v = at(i, j), q = (r * W + c) * 4;
      const i2 = Math.floor((c + 1) / W * n), j2 = Math.floor((H - r) / H * n), edge = v !== 255 && ((at(i2, j) !== v && at(i2, j) !== 255) || (at(i, j2) !== v && at(i, j2) !== 255));
      const g = v === 255 ? 255 : edge ? 90 : Math.round(130 + 115 * v / Math.max(1, B.levels - 1));
      p[q] = p[q + 1] = p[q + 2] = g; p[q + 3] = 255; }
    ctx.putImageData(img, 0, 0); }
  let shown = 0; const here = facetIndex();
  for (let t = 0; t < T.n; t++) { if (T.facet && T.facet[t] !== here) continue; shown++; ctx.strokeStyle = D.outcomes[C[t]].color; ctx.lineWidth = 1.2; ctx.beginPath(); let on = false;
    for (let s = 0; s < T.steps; s++) { const x = X[t * T.steps + s], y = Y[t * T.steps + s]; if (!isFinite(x) || !isFinite(y)) continue; on ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y)); on = true; }
    ctx.stroke(); const x0 = X[t * T.steps], y0 = Y[t * T.steps];
    if (isFinite(x0)) { ctx.fillStyle = D.outcomes[C[t]].color; ctx.beginPath(); ctx.arc(px(x0), py(y0), 3, 0, 7); ctx.fill(); ctx.strokeStyle = '#000'; ctx.lineWidth = .5; ctx.stroke(); } }
  $('trajn').textContent = T.facet ? `${shown} of them in this facet (${$('facetname').textContent || 'all'}) drawn` : 'all drawn';
}
function init() {
  const box = $('selectors');
  G.facets.forEach(d => { const s = document.createElement('select'); s.id = 'sel-' + d;
    AX[d].values.forEach((v, i) => { const o = document.createElement('option'); o.value = i; o.textContent = fmt(v); s.appendChild(o); });
    s.onchange = () => { sel[d] = +s.value; writeHash(); drawMaps(); };
    const l = document.createElement('label'); l.textContent = ` ${d}: `; l.appendChild(s); box.appendChild(l); });
  const sync = () => { readHash(); G.facets.forEach(d => $('sel-' + d).value = sel[d]); drawMaps();
    const h = new URLSearchParams(location.hash.slice(1)); if (h.has('hover')) { const [ix, iy] = h.get('hover').split(',').map(Number);
      const r = $('map').getBoundingClientRect(); tipAt([ix, iy], r.left + (ix + 1) * S, r.top + (NY - iy) * S); } };
  window.addEventListener('hashchange', sync); sync();
  const m = $('map'); let start = null;
  m.addEventListener('mousemove', e => { tip(e); if (start && e.buttons) { const c = cellOf(e); if (c) { region = [...start, ...c]; showRegion(); } } });
  m.addEventListener('mouseleave', () => $('tip').style.display = 'none');
  m.addEventListener('mousedown', e => { start = cellOf(e); if (start) { region = [...start, ...start]; showRegion(); } e.preventDefault(); });
  window.addEventListener('mouseup', () => { if (start) { start = null; writeHash(); } });
  document.body.dataset.violations = violations;
  document.body.dataset.readyMs = performance.now().toFixed(0);
}
init();
"""


def _ends(ax: dict) -> tuple[str, str]:
    v = ax["values"]
    return tuple(html.escape(f"{a:.4g}" if isinstance(a, float) else str(a)) for a in (v[0], v[-1]))


def _framed(inner: str, x: dict, y: dict) -> str:
    """A map canvas with its axes' end values and names at its edges."""
    (x0, x1), (y0, y1) = _ends(x), _ends(y)
    return (f"<div class='frame'><div class='yl'><span>{y1}</span><span>{html.escape(y['name'])} &uarr;</span>"
            f"<span>{y0}</span></div><div><div class='wrap'>{inner}</div><div class='xl'><span>{x0}</span>"
            f"<span>{html.escape(x['name'])} &rarr;</span><span>{x1}</span></div></div></div>")


def _axis_line(ax: dict) -> str:
    v = [f"{a:.6g}" if isinstance(a, float) else a for a in ax["values"]]
    return f"{ax['label']} ({ax['name']}): {v[0]} .. {v[-1]}, {len(v)} values" + (
        f", {ax['spacing']} spacing" if ax["spacing"] else "")


def render(data: dict, fraction_rows, sizes) -> str:
    """The page: static HTML (fractions, provenance) plus the payload and the script."""
    from .report import fractions_html, to_json

    data = {**data, "never": [int(NEVER_COLOR[i:i + 2], 16) for i in (1, 3, 5)]}
    g, t = data["grid"], data["trajectories"]
    esc = html.escape
    dims = " x ".join(f"{d} {n}" for d, n in sizes.items())
    block = (f"<p class='note'>This grid has {_prod(sizes):,} cells: the maps show blocks of "
             f"{g['block']} x {g['block']} cells of {g['x']} x {g['y']}, each drawn in its most common outcome "
             f"(the mode; ties go to the lower code); the hover reads one cell of that outcome in the block. The "
             f"fractions and the box-counting dimension use every cell.</p>" if g["block"] > 1 else "")
    traj = ""
    if t:
        bands = ("grey bands: log10 of the recorded loss at the nearest recorded point (12 quantile levels, darker = "
                 "lower, outlined; white: no recorded point within 1/8 of the view)" if t.get("bands") else "no recorded loss")
        traj = (f"<h2>Recorded trajectories</h2><p class='ax'>{t['n']} of {t['of']} recorded runs, {t['steps']} points "
                f"each, {esc(t['py'])} (up) vs {esc(t['px'])} (across, {t['lo'][0]:.3g} .. {t['hi'][0]:.3g}; up "
                f"{t['lo'][1]:.3g} .. {t['hi'][1]:.3g}), coloured by outcome, starts dotted; {bands}; <span id='trajn'></span>.</p>"
                f"<canvas id='traj' width='520' height='420'></canvas>")
    has_conv = any(f["name"] == "converge_step" for f in g["fields"])
    prov = data["prov"]
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in prov["attrs"])
    x, y = data["axes"][g["x"]], data["axes"][g["y"]]
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(data['title'])}</title><style>{CSS}</style></head><body>
<h1>{esc(data['title'])}</h1><div class="ax">{esc(prov['file'])}: {esc(dims)}</div>{block}
<h2>Basin map <span id="facetname" class="ax"></span></h2><div id="selectors"></div>
<div class="row"><div>{_framed("<canvas id='map'></canvas><div id='box'></div>", x, y)}
<div class="ax cap">across: {esc(_axis_line(x))}<br>up: {esc(_axis_line(y))}</div></div>
<div class="lg" id="legend"></div>
{"<div>" + _framed("<canvas id='conv'></canvas>", x, y) + "<div class='ax cap' id='convlegend'></div></div>" if has_conv else ""}</div>
<p id="dim" class="ax"></p><h2>Region</h2><pre id="cmd"></pre>
<h2>Outcome fractions</h2>{fractions_html(fraction_rows)}
{traj}
<h2>Provenance</h2><table class="pv">{rows}</table>
<p class="ax">The command that reproduces {esc(prov['file'])} (the full spec, defaults filled in, as stored in the file):</p>
<pre id="repro">{esc(prov['command'])}</pre>
<div id="tip"></div>
<script id="data" type="application/json">{to_json(data)}</script>
<script>{JS}</script></body></html>"""


def _prod(sizes) -> int:
    n = 1
    for v in sizes.values():
        n *= int(v)
    return n
