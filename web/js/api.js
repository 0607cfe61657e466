// Talks to iotgate-api. The token lives in sessionStorage and travels only in the Access-Token header:
// never in a URL, never logged.
import { h, icon } from './dom.js';

const TOKEN_KEY = 'iotgate.token';

export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
  describe() {
    const parts = [this.message];
    if (this.status) parts.push(`(HTTP ${this.status}${this.code !== undefined && this.code !== null ? `, code ${this.code}` : ''})`);
    return parts.join(' ');
  }
}

const REASONS = {
  400: 'The request was refused',
  401: 'Not signed in or the token is no longer valid',
  403: 'You are not allowed to do this',
  404: 'Not found',
  409: 'Conflict with the current state',
  413: 'Request too large',
  503: 'The service is unavailable (Redis down?)',
};

export async function api(method, path, body, { token } = {}) {
  const headers = { 'Access-Token': token || session.token() || '', 'Api-Version': '2', Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, null, 'Cannot reach the iotgate API server');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!res.ok) {
    const msg = data && typeof data.msg === 'string' && data.msg ? data.msg : (REASONS[res.status] || res.statusText || 'Request failed');
    const err = new ApiError(res.status, data ? data.code : null, msg);
    if (res.status === 401 && !token) window.dispatchEvent(new CustomEvent('iotgate:unauthorized'));
    throw err;
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b ?? {});
export const put = (p, b) => api('PUT', p, b ?? {});

export const enc = encodeURIComponent;

// ---------- toasts ----------

export function toast(text, kind = '') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const close = h('button', { class: 'x', type: 'button', 'aria-label': 'Dismiss' }, '×');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    kind === 'error' ? null : icon('check'), h('span', { class: 'toast-text' }, text), close);
  const remove = () => t.remove();
  close.addEventListener('click', remove);
  box.appendChild(t);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(remove, kind === 'error' ? 9000 : 4000);
}

export function toastError(err, what) {
  const msg = err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err);
  toast(what ? `${what}: ${msg}` : msg, 'error');
}
