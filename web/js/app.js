// iotgate console: shell, sign-in and the hash router. Routes:
//   #/products  #/products/{product_id}  #/tasks?product=P  #/tasks/new?product=P  #/tasks/{task_id}  #/logs
import { h, icon, replace } from './dom.js';
import { api, session, toast, ApiError } from './api.js';
import { productsView, devicesView } from './views/products.js';
import { tasksView, newTaskView } from './views/tasks.js';
import { taskView } from './views/task.js';
import { logsView } from './views/logs.js';

const root = document.getElementById('app');
const state = { member: null };

const ROUTES = [
  [/^\/products$/, productsView, 'products'],
  [/^\/products\/([^/]+)$/, devicesView, 'products'],
  [/^\/tasks$/, tasksView, 'tasks'],
  [/^\/tasks\/new$/, newTaskView, 'tasks'],
  [/^\/tasks\/([^/]+)$/, taskView, 'tasks'],
  [/^\/logs$/, logsView, 'logs'],
];

let current = null;  // { gen, cleanups }
let generation = 0;

function brand(light) {
  return h('div', { class: 'brand' }, h('img', { src: 'favicon.svg', alt: '' }),
    h('div', null, 'iotgate', h('small', null, light ? 'OTA & device console' : 'console')));
}

// ---------- sign-in ----------

function renderSignIn(message) {
  teardown();
  document.title = 'Sign in · iotgate console';
  const input = h('input', { class: 'input', id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'Paste your access token', required: true });
  const err = h('div', { class: 'alert error', id: 'signin-error', role: 'alert', hidden: !message }, message || '');
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'signin-submit' }, 'Sign in');
  const form = h('form', { id: 'signin-form', novalidate: true },
    err,
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Access token'), input,
      h('div', { class: 'help' }, 'Issued by an operator with ', h('code', null, 'scripts/iotgate token add --member NAME'), '. Kept only for this browser tab.')),
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) { err.textContent = 'Enter your access token.'; err.hidden = false; input.focus(); return; }
    submit.disabled = true;
    try {
      const me = await api('GET', '/v2/me', undefined, { token });
      session.set(token);
      state.member = me && me.member ? String(me.member) : '';
      input.value = '';
      if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/products';
      renderShell();
    } catch (ex) {
      err.textContent = ex instanceof ApiError && ex.status === 401 ? 'That token was not accepted.' : `Could not sign in: ${ex.message}`;
      err.hidden = false;
      submit.disabled = false;
      input.select();
    }
  });
  replace(root, h('div', { class: 'signin' },
    h('div', { class: 'card' }, brand(true),
      h('h1', null, 'Sign in'),
      h('p', { class: 'lead' }, 'Manage products, devices and firmware rollouts.'),
      form,
      h('div', { class: 'foot' }, 'Signing out or closing the tab forgets the token.'))));
  input.focus();
}

// ---------- shell ----------

let navLinks = {};
let mainEl = null;

function renderShell() {
  const member = state.member || '?';
  navLinks = {
    products: h('a', { href: '#/products', id: 'nav-products' }, icon('box'), 'Products & devices'),
    tasks: h('a', { href: '#/tasks', id: 'nav-tasks' }, icon('upload'), 'OTA tasks'),
    logs: h('a', { href: '#/logs', id: 'nav-logs' }, icon('list'), 'OTA logs'),
  };
  const signOut = h('button', { class: 'btn small', type: 'button', id: 'signout' }, icon('signout'), 'Sign out');
  signOut.addEventListener('click', () => {
    session.clear();
    state.member = null;
    location.hash = '#/products';
    renderSignIn('');
  });
  mainEl = h('main', { class: 'main', id: 'main' });
  replace(root, h('div', { class: 'shell' },
    h('aside', { class: 'side' }, brand(false),
      h('nav', { class: 'nav', 'aria-label': 'Main' }, Object.values(navLinks)),
      h('div', { class: 'side-foot' },
        h('div', { class: 'who' }, h('div', { class: 'avatar', 'aria-hidden': 'true' }, member.slice(0, 1)),
          h('div', null, h('b', { id: 'member' }, member), 'Signed in')),
        signOut)),
    mainEl));
  route();
}

function teardown() {
  if (current) current.cleanups.forEach((f) => { try { f(); } catch (e) { /* ignore */ } });
  current = null;
}

function route() {
  if (!session.token()) { renderSignIn(''); return; }
  if (!mainEl || !mainEl.isConnected) { renderShell(); return; }
  teardown();
  const raw = location.hash.replace(/^#/, '') || '/products';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  let match = null;
  for (const [re, view, section] of ROUTES) {
    const m = path.match(re);
    if (m) { match = { view, section, params: m.slice(1).map((x) => { try { return decodeURIComponent(x); } catch (e) { return x; } }) }; break; }
  }
  if (!match) { location.replace('#/products'); return; }
  for (const [k, a] of Object.entries(navLinks)) a.classList.toggle('active', k === match.section);
  const gen = ++generation;
  current = { gen, cleanups: [] };
  const ctx = {
    params: match.params,
    query,
    member: state.member,
    alive: () => current !== null && current.gen === gen,
    onCleanup: (f) => { if (current && current.gen === gen) current.cleanups.push(f); else f(); },
    go: (hash) => { location.hash = hash; },
  };
  replace(mainEl, h('div', { class: 'loading' }, 'Loading…'));
  Promise.resolve(match.view(ctx, mainEl)).catch((e) => {
    if (!ctx.alive()) return;
    replace(mainEl, h('div', { class: 'alert error', role: 'alert' }, h('b', null, 'Error:'), h('span', null, e && e.message ? e.message : String(e))));
  });
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', route);
window.addEventListener('iotgate:unauthorized', () => {
  if (!session.token()) return;
  session.clear();
  state.member = null;
  renderSignIn('Your session ended: the token is no longer accepted. Sign in again.');
});

async function start() {
  if (!session.token()) { renderSignIn(''); return; }
  try {
    const me = await api('GET', '/v2/me');
    state.member = me && me.member ? String(me.member) : '';
    renderShell();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;  // the unauthorized handler shows the sign-in
    state.member = '';
    renderShell();
    toast(`Could not load your profile: ${e.message}`, 'error');
  }
}

start();
