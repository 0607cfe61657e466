// DOM helpers. Text from the API only ever reaches the page as text nodes or attribute values:
// nothing in the console assigns innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) { child.forEach((c) => append(el, c)); return; }
  el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') { el[k] = Boolean(v); }
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

// h('div', {class: 'x', onClick: f}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// Small line icons, drawn from fixed path data (never from API text).
const ICONS = {
  box: ['M21 8l-9-5-9 5 9 5 9-5z', 'M3 8v8l9 5 9-5V8', 'M12 13v8'],
  upload: ['M12 16V4', 'M7 9l5-5 5 5', 'M4 20h16'],
  list: ['M8 6h13', 'M8 12h13', 'M8 18h13', 'M3.5 6h.01', 'M3.5 12h.01', 'M3.5 18h.01'],
  plus: ['M12 5v14', 'M5 12h14'],
  play: ['M7 4l13 8-13 8z'],
  stop: ['M6 6h12v12H6z'],
  trash: ['M4 7h16', 'M10 11v6', 'M14 11v6', 'M6 7l1 13h10l1-13', 'M9 7V4h6v3'],
  check: ['M5 12l5 5 9-10'],
  x: ['M6 6l12 12', 'M18 6L6 18'],
  send: ['M22 2L11 13', 'M22 2l-7 20-4-9-9-4 20-7z'],
  flag: ['M5 21V4', 'M5 4h11l-2 4 2 4H5'],
  refresh: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 4v7h-7'],
  inbox: ['M3 13l3-8h12l3 8', 'M3 13v6h18v-6', 'M3 13h5l1 3h6l1-3h5'],
  signout: ['M15 4h4v16h-4', 'M10 8l-4 4 4 4', 'M6 12h10'],
  chip: ['M7 7h10v10H7z', 'M10 2v5', 'M14 2v5', 'M10 17v5', 'M14 17v5', 'M2 10h5', 'M2 14h5', 'M17 10h5', 'M17 14h5'],
};

export function icon(name) {
  return s('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true' }, (ICONS[name] || []).map((d) => s('path', { d })));
}

// ---------- formatting ----------

// A time from the API: Unix seconds (or milliseconds), or the seed's "yyyy-MM-dd'T'HH:mm:ss.SS'Z'" text.
export function toDate(v) {
  if (v === null || v === undefined || v === '' || v === 0 || v === '0') return null;
  const n = Number(v);
  if (Number.isFinite(n)) return n > 0 ? new Date(n > 1e12 ? n : n * 1000) : null;
  const d = new Date(String(v));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtDate(d) {
  if (!d) return '—';
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function ago(d) {
  if (!d) return '';
  const sec = Math.round((Date.now() - d.getTime()) / 1000);
  if (sec < 0) return 'just now';
  if (sec < 60) return `${sec}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.floor(sec / 3600)} h ago`;
  return `${Math.floor(sec / 86400)} d ago`;
}

// "2026-12-04T04:46:30.12Z" (the seed's create_time) -> local date text
export function fmtIso(v) {
  if (!v) return '—';
  const d = new Date(String(v));
  return Number.isNaN(d.getTime()) ? String(v) : fmtDate(d);
}

export function timeCell(v) {
  const d = toDate(v);
  if (!d) return h('span', { class: 'sub' }, 'never');
  return h('span', { title: d.toISOString() }, fmtDate(d), h('div', { class: 'sub' }, ago(d)));
}

export function badge(text, kind = '', extra = '') {
  return h('span', { class: `badge ${kind} ${extra}`.trim() }, text);
}

export function truthy(v) {
  return v === true || v === 1 || v === '1' || v === 'true';
}

export function emptyState(iconName, title, text, action) {
  return h('div', { class: 'empty' }, icon(iconName), h('b', null, title), text ? h('p', null, text) : null, action || null);
}
