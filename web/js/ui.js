// Shared pieces: labels of the seed's enumerations, the paged table, page headers.
import { h, badge, icon, replace, emptyState } from './dom.js';
import { ApiError, toastError } from './api.js';

export const TASK_STATUS = {
  0: ['Stopped', 'plain-muted'],
  1: ['Running', 'ok live'],
  2: ['Waiting', 'warn'],
  3: ['In review', 'info'],
};

export function statusBadge(v) {
  const [text, kind] = TASK_STATUS[Number(v)] || [`Status ${v}`, ''];
  return badge(text, kind === 'plain-muted' ? '' : kind);
}

const TYPES = { 1: 'Wi-Fi', 2: 'MCU', 3: 'Sub-device', wifi: 'Wi-Fi', mcu: 'MCU', 'sub-device': 'Sub-device' };
export function typeLabel(v) { return TYPES[v] || String(v ?? '—'); }

export function tagBadge(v) {
  return Number(v) === 1 ? badge('Test', 'violet plain') : badge('Production', 'info plain');
}
export function modeLabel(v) { return Number(v) === 1 ? 'Manual' : 'Automatic'; }

export const STATES = [
  ['pending', 'Pending', '#9aa3b5'],
  ['notified', 'Notified', '#4f7df0'],
  ['acked', 'Acked', '#8b5cf6'],
  ['succeeded', 'Succeeded', '#1f9d63'],
  ['failed', 'Failed', '#d93a2b'],
  ['timed_out', 'Timed out', '#e0962b'],
];

export function pageHead({ crumbs, title, titleExtra, sub, actions }) {
  return h('div', { class: 'page-head' },
    h('div', null,
      crumbs ? h('div', { class: 'crumbs' }, crumbs.map((c, i) => [i ? ' / ' : '', c[1] ? h('a', { href: c[1] }, c[0]) : c[0]])) : null,
      h('div', { class: 'title-row' }, h('h1', null, title), titleExtra || null),
      sub ? h('div', { class: 'sub' }, sub) : null),
    actions ? h('div', { class: 'actions' }, actions) : null);
}

export function errorBox(err, what) {
  const msg = err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err);
  return h('div', { class: 'alert error', role: 'alert' }, h('b', null, what ? `${what}:` : 'Error:'), h('span', null, msg));
}

export function button(label, { kind = '', iconName, onClick, title, small, attrs = {} } = {}) {
  const b = h('button', { type: 'button', class: `btn ${kind} ${small ? 'small' : ''}`.trim(), title, ...attrs },
    iconName ? icon(iconName) : null, label);
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

// Runs an async action with the button disabled; API errors become toasts. Returns the result or undefined.
export async function busy(btn, fn, what) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (e) {
    toastError(e, what);
    return undefined;
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
  }
}

// A table of one page of {count, list}; fetchPage(offset, limit) -> {count, list}.
export function pagedTable({ columns, fetchPage, empty, limit = 50, rowClass, id, ctx }) {
  let offset = 0;
  const body = h('div', { class: 'table-body' }, h('div', { class: 'loading' }, 'Loading…'));
  const pagerText = h('span', null, '');
  const prev = button('Previous', { small: true, onClick: () => { offset = Math.max(0, offset - limit); load(); } });
  const next = button('Next', { small: true, onClick: () => { offset += limit; load(); } });
  const pager = h('div', { class: 'pager', hidden: true }, pagerText, h('div', { class: 'btns' }, prev, next));
  const el = h('div', { id }, body, pager);

  async function load() {
    let page;
    try {
      page = await fetchPage(offset, limit);
    } catch (e) {
      if (ctx && !ctx.alive()) return;
      replace(body, h('div', { class: 'card-body' }, errorBox(e, 'Could not load')));
      pager.hidden = true;
      return;
    }
    if (ctx && !ctx.alive()) return;
    const list = Array.isArray(page?.list) ? page.list : (Array.isArray(page) ? page : []);
    const count = Number(page?.count ?? list.length);
    if (list.length === 0 && offset > 0 && count > 0) { offset = Math.max(0, Math.floor((count - 1) / limit) * limit); load(); return; }
    if (list.length === 0) {
      replace(body, empty ? empty() : emptyState('inbox', 'Nothing here yet', ''));
      pager.hidden = true;
      return;
    }
    const table = h('table', { class: 'data' },
      h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.class || null }, c.title)))),
      h('tbody', null, list.map((row) => h('tr', { class: rowClass ? rowClass(row) : null, dataset: { key: String(row.id ?? row.device_id ?? row.product_id ?? '') } },
        columns.map((c) => h('td', { class: c.class || null }, c.cell(row, load)))))));
    replace(body, h('div', { class: 'table-wrap' }, table));
    pager.hidden = false;
    pagerText.textContent = `${offset + 1}–${offset + list.length} of ${count}`;
    prev.disabled = offset === 0;
    next.disabled = offset + list.length >= count;
  }
  load();
  return { el, reload: load };
}
