// Hand-made SVG bar chart of a task's version distribution (seed 002 op 16). No library.
import { s, h, emptyState } from './dom.js';

function niceMax(v) {
  if (v <= 5) return Math.max(1, Math.ceil(v));
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// ratios: [{firmware_version, devices}], total: devices in the task. Colours mark the from and target versions.
export function versionChart({ ratios, total, fromVersion, targetVersion, width }) {
  const rows = (Array.isArray(ratios) ? ratios : [])
    .map((r) => ({ v: String(r.firmware_version ?? r.version ?? ''), n: Number(r.devices) || 0 }))
    .filter((r) => r.n > 0 || r.v)
    .sort((a, b) => b.n - a.n || a.v.localeCompare(b.v, undefined, { numeric: true }));
  const tot = Number(total) || rows.reduce((a, r) => a + r.n, 0);
  if (!rows.length) {
    return emptyState('chip', 'No versions reported yet', 'The chart fills in as the task\'s devices report their firmware.');
  }
  // drawn at the width it is shown at, so its text keeps its size
  const W = Math.max(320, Math.round(width || 640)); const H = 270; const L = 44; const R = 16; const T = 26; const B = 46;
  const pw = W - L - R; const ph = H - T - B;
  const max = niceMax(Math.max(...rows.map((r) => r.n)));
  const ticks = max <= 5 ? max : 5;
  const slot = pw / rows.length;
  const bw = Math.min(72, slot * 0.62);
  const color = (v) => (v === targetVersion ? '#1f9d63' : v === fromVersion ? '#7c8db5' : v === '' ? '#c9cfdb' : '#4f7df0');
  const svg = s('svg', { class: 'chart', id: 'version-chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'Devices per firmware version' });
  for (let i = 0; i <= ticks; i++) {
    const val = (max / ticks) * i;
    const y = T + ph - (val / max) * ph;
    svg.appendChild(s('line', { x1: L, x2: W - R, y1: y, y2: y, stroke: i === 0 ? '#b9c1d1' : '#edf0f5', 'stroke-width': 1 }));
    svg.appendChild(s('text', { x: L - 8, y: y + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#7a8499' }, Number.isInteger(val) ? String(val) : val.toFixed(1)));
  }
  rows.forEach((r, i) => {
    const x = L + slot * i + (slot - bw) / 2;
    const bh = (r.n / max) * ph;
    const y = T + ph - bh;
    const pct = tot ? Math.round((r.n / tot) * 1000) / 10 : 0;
    const g = s('g', { class: 'bar', 'data-version': r.v, 'data-devices': r.n });
    g.appendChild(s('title', null, `${r.v || 'not reported'}: ${r.n} device${r.n === 1 ? '' : 's'} (${pct}%)`));
    g.appendChild(s('rect', { x, y, width: bw, height: Math.max(bh, 1), rx: 3, fill: color(r.v) }));
    g.appendChild(s('text', { x: x + bw / 2, y: y - 7, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: '#1b2233' }, `${r.n} · ${pct}%`));
    const label = r.v === '' ? 'not reported' : r.v.length > 14 ? `${r.v.slice(0, 13)}…` : r.v;
    g.appendChild(s('text', { x: x + bw / 2, y: T + ph + 18, 'text-anchor': 'middle', 'font-size': 12, fill: r.v === '' ? '#7a8499' : '#4a5468', 'font-family': r.v === '' ? null : 'ui-monospace, DejaVu Sans Mono, monospace', 'font-style': r.v === '' ? 'italic' : null }, label));
    if (r.v === targetVersion || r.v === fromVersion) {
      g.appendChild(s('text', { x: x + bw / 2, y: T + ph + 34, 'text-anchor': 'middle', 'font-size': 10.5, fill: color(r.v), 'font-weight': 600 }, r.v === targetVersion ? 'target' : 'from'));
    }
    svg.appendChild(g);
  });
  return h('div', null,
    h('div', { class: 'chart-total', id: 'chart-total' }, h('b', null, String(tot)), ` device${tot === 1 ? '' : 's'} in the task`),
    svg,
    h('div', { class: 'legend' },
      h('span', null, h('i', { style: 'background:#1f9d63' }), 'target version'),
      h('span', null, h('i', { style: 'background:#7c8db5' }), 'from version'),
      h('span', null, h('i', { style: 'background:#4f7df0' }), 'other'),
      rows.some((r) => r.v === '') ? h('span', null, h('i', { style: 'background:#c9cfdb' }), 'not reported') : null));
}
