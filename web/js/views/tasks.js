// OTA task list and the create form.
import { h, replace, emptyState, fmtIso, icon } from '../dom.js';
import { get, post, enc, toast, toastError, ApiError } from '../api.js';
import { pageHead, pagedTable, button, statusBadge, typeLabel, tagBadge, modeLabel, errorBox } from '../ui.js';

const PRODUCT_KEY = 'iotgate.product';

const PAGE = 100;  // the API's largest page

// Every item of a paged list (at most 20 pages), for pickers.
export async function getAll(path) {
  const out = [];
  for (let offset = 0; offset < PAGE * 20; offset += PAGE) {
    const page = await get(`${path}${path.includes('?') ? '&' : '?'}offset=${offset}&limit=${PAGE}`);
    const list = Array.isArray(page?.list) ? page.list : [];
    out.push(...list);
    if (list.length < PAGE || out.length >= Number(page?.count ?? 0)) break;
  }
  return out;
}

export function loadProducts() { return getAll('/v2/products'); }

function productSelect(products, selected, id) {
  return h('select', { id, name: 'product_id' },
    products.map((p) => h('option', { value: p.product_id, selected: p.product_id === selected }, `${p.product_id} · ${p.protocol ?? ''}`)));
}

export async function tasksView(ctx, main) {
  document.title = 'OTA tasks · iotgate console';
  let products;
  try {
    products = await loadProducts();
  } catch (e) {
    replace(main, pageHead({ title: 'OTA tasks' }), errorBox(e, 'Could not load the products'));
    return;
  }
  if (!ctx.alive()) return;
  if (!products.length) {
    replace(main, pageHead({ title: 'OTA tasks' }), h('div', { class: 'card' },
      emptyState('box', 'No products yet', 'Upgrade tasks belong to a product. Add a product with scripts/iotgate product add …')));
    return;
  }
  let pid = ctx.query.get('product') || sessionStorage.getItem(PRODUCT_KEY) || '';
  if (!products.some((p) => p.product_id === pid)) pid = products[0].product_id;
  sessionStorage.setItem(PRODUCT_KEY, pid);
  history.replaceState(null, '', `#/tasks?product=${enc(pid)}`);

  const select = productSelect(products, pid, 'task-product');
  select.addEventListener('change', () => { sessionStorage.setItem(PRODUCT_KEY, select.value); ctx.go(`#/tasks?product=${enc(select.value)}`); });
  const tag = h('select', { id: 'task-tag', 'aria-label': 'Tag' },
    h('option', { value: '' }, 'All tags'), h('option', { value: '0' }, 'Production'), h('option', { value: '1' }, 'Test'));
  const search = h('input', { class: 'input', id: 'task-search', type: 'search', placeholder: 'Search by name', 'aria-label': 'Search by name' });

  const table = pagedTable({
    ctx,
    id: 'tasks-table',
    limit: 20,
    fetchPage: (offset, limit) => {
      const body = { product_id: pid, offset, limit, order: { id: 'desc' } };
      if (tag.value !== '') body.tag_type = Number(tag.value);
      if (search.value.trim()) body.query = { name: { $like: search.value.trim() } };
      return post('/v2/upgrade/firmware/tasks', body);
    },
    empty: () => (search.value || tag.value
      ? emptyState('inbox', 'No task matches', 'Change the filters to see more tasks.')
      : emptyState('upload', 'No upgrade tasks for this product', 'Create a task to roll a firmware version out to its devices.',
        h('a', { class: 'btn primary', href: `#/tasks/new?product=${enc(pid)}` }, icon('plus'), 'New task'))),
    columns: [
      { title: 'ID', class: 'num', cell: (t) => h('span', { class: 'mono' }, t.id) },
      { title: 'Task', cell: (t) => [h('a', { class: 'rowlink', href: `#/tasks/${enc(t.id)}` }, t.name || '(no name)'), t.description ? h('div', { class: 'sub' }, t.description.length > 70 ? `${t.description.slice(0, 70)}…` : t.description) : null] },
      { title: 'Firmware', class: 'nowrap', cell: (t) => [h('span', { class: 'mono' }, String(t.from_version ?? ''), ' → ', String(t.target_version ?? '')), h('div', { class: 'sub' }, `${typeLabel(t.type)} · ${t.identify ?? ''}`)] },
      { title: 'Tag', cell: (t) => tagBadge(t.tag_type) },
      { title: 'Mode', cell: (t) => modeLabel(t.task_type) },
      { title: 'Status', cell: (t) => statusBadge(t.status) },
      { title: 'Upgraded', class: 'num', cell: (t) => [String(t.upgrade_count ?? 0), t.surplus_count !== undefined && t.surplus_count !== '' ? h('div', { class: 'sub' }, `${t.surplus_count} to go`) : null] },
      { title: 'Created', class: 'nowrap', cell: (t) => h('span', { class: 'sub' }, fmtIso(t.create_time)) },
    ],
  });
  let debounce = null;
  search.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => table.reload(), 250); });
  tag.addEventListener('change', () => table.reload());
  ctx.onCleanup(() => clearTimeout(debounce));

  replace(main,
    pageHead({ title: 'OTA tasks', sub: 'Firmware upgrade tasks of a product: test tasks reach their listed devices, production tasks run after review.',
      actions: [button('Refresh', { iconName: 'refresh', onClick: () => table.reload() }),
        h('a', { class: 'btn primary', id: 'new-task', href: `#/tasks/new?product=${enc(pid)}` }, icon('plus'), 'New task')] }),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('div', { class: 'toolbar' },
        h('label', { class: 'sub', for: 'task-product' }, 'Product'), select, tag, search)),
      table.el));
}

// ---------------------------------------------------------------- create

const VERSION_RE = /^[\x21-\x7e]{1,64}$/;
const IDENT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MD5_RE = /^[0-9a-fA-F]{32}$/;
const URL_RE = /^https?:\/\/[^\s]+$/;
const SIZE_RE = /^\d{1,15}$/;

function field(name, label, control, { help, required, span } = {}) {
  const err = h('div', { class: 'err', id: `err-${name}`, hidden: true });
  const wrap = h('div', { class: `field ${span ? 'span-2' : ''}`.trim(), dataset: { field: name } },
    h('label', { for: `f-${name}`, class: required ? 'req' : null }, label), control, help ? h('div', { class: 'help' }, help) : null, err);
  return wrap;
}
const input = (name, attrs = {}) => h('input', { class: 'input', id: `f-${name}`, name, autocomplete: 'off', spellcheck: 'false', ...attrs });

function radios(name, options, value) {
  return h('div', { class: 'seg', role: 'radiogroup', id: `f-${name}` },
    options.map(([v, label]) => h('label', null, h('input', { type: 'radio', name, value: v, checked: String(v) === String(value) }), label)));
}

export async function newTaskView(ctx, main) {
  document.title = 'New OTA task · iotgate console';
  let products;
  try {
    products = await loadProducts();
  } catch (e) {
    replace(main, pageHead({ title: 'New upgrade task' }), errorBox(e, 'Could not load the products'));
    return;
  }
  if (!ctx.alive()) return;
  let pid = ctx.query.get('product') || sessionStorage.getItem(PRODUCT_KEY) || (products[0] && products[0].product_id) || '';

  const f = {
    product_id: productSelect(products, pid, 'f-product_id'),
    name: input('name', { maxlength: 64, placeholder: 'e.g. fw-2.1 rollout' }),
    description: h('textarea', { id: 'f-description', name: 'description', rows: 2, placeholder: 'What this firmware changes' }),
    type: h('select', { id: 'f-type', name: 'type' }, h('option', { value: '1' }, 'Wi-Fi module'), h('option', { value: '2' }, 'MCU'), h('option', { value: '3' }, 'Sub-device')),
    identify: input('identify', { placeholder: 'default' }),
    from_version: input('from_version', { placeholder: '2.0' }),
    target_version: input('target_version', { placeholder: '2.1' }),
    target_version_url: input('target_version_url', { placeholder: 'https://firmware.example/2.1.bin', type: 'url' }),
    target_version_md5: input('target_version_md5', { placeholder: '32 hex digits', class: 'input mono' }),
    target_version_size: input('target_version_size', { placeholder: 'bytes', inputmode: 'numeric' }),
    from_version_url: input('from_version_url', { placeholder: 'optional', type: 'url' }),
    from_version_md5: input('from_version_md5', { placeholder: 'optional', class: 'input mono' }),
    from_version_size: input('from_version_size', { placeholder: 'optional', inputmode: 'numeric' }),
  };
  const taskType = radios('task_type', [[0, 'Automatic'], [1, 'Manual push']], 0);
  const tagType = radios('tag_type', [[0, 'Production'], [1, 'Test']], ctx.query.get('tag') === '1' ? 1 : 0);
  const category = radios('category', [[0, 'All devices of the product'], [1, 'Listed devices']], 0);
  const deviceBox = h('div', { class: 'checks', id: 'f-device_list' }, h('span', { class: 'sub' }, 'Loading devices…'));
  const deviceErr = h('div', { class: 'err', id: 'err-device_list', hidden: true });
  const deviceField = h('div', { class: 'field span-2', dataset: { field: 'device_list' } },
    h('div', { class: 'label req' }, 'Devices'), deviceBox, h('div', { class: 'help' }, 'A test task reaches only these devices.'), deviceErr);
  const formAlert = h('div', { class: 'alert error form-alert', id: 'form-alert', role: 'alert', hidden: true });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'create-task' }, 'Create task');
  const radioValue = (name) => { const el = main.querySelector(`input[name="${name}"]:checked`); return el ? Number(el.value) : 0; };

  async function loadDevices() {
    const p = f.product_id.value;
    replace(deviceBox, h('span', { class: 'sub' }, 'Loading devices…'));
    try {
      const list = await getAll(`/v2/products/${enc(p)}/devices`);
      if (!ctx.alive() || f.product_id.value !== p) return;
      if (!list.length) { replace(deviceBox, h('span', { class: 'sub' }, 'This product has no devices.')); return; }
      replace(deviceBox, list.map((d) => h('label', null, h('input', { type: 'checkbox', name: 'device', value: d.device_id }), d.device_id)));
    } catch (e) {
      replace(deviceBox, h('span', { class: 'err' }, `Could not load devices: ${e.message}`));
    }
  }
  function syncScope() {
    const test = radioValue('tag_type') === 1;
    const listed = test || radioValue('category') === 1;
    deviceField.hidden = !listed;
    category.querySelectorAll('input').forEach((el) => { el.disabled = test; });
    if (test) category.querySelector('input[value="1"]').checked = true;
    f.identify.placeholder = f.type.value === '1' ? 'default' : 'module / MCU index (required)';
  }
  f.product_id.addEventListener('change', () => { sessionStorage.setItem(PRODUCT_KEY, f.product_id.value); loadDevices(); });
  [tagType, category].forEach((g) => g.addEventListener('change', syncScope));
  f.type.addEventListener('change', syncScope);

  const form = h('form', { class: 'card', id: 'task-form', novalidate: true },
    formAlert,
    h('section', { class: 'form-section' }, h('h2', null, 'Task'), h('p', { class: 'desc' }, 'Name and scope of the rollout.'),
      h('div', { class: 'form-grid' },
        field('product_id', 'Product', f.product_id, { required: true }),
        field('name', 'Name', f.name, { required: true, help: 'At most 32 characters.' }),
        field('description', 'Description', f.description, { span: true, help: 'At most 250 characters.' }),
        h('div', { class: 'field' }, h('div', { class: 'label' }, 'Tag'), tagType, h('div', { class: 'help' }, 'Test: only the listed devices, run when you start it. Production: runs after a review.')),
        h('div', { class: 'field' }, h('div', { class: 'label' }, 'Mode'), taskType, h('div', { class: 'help' }, 'Automatic: a device reporting the from-version is notified.')),
        h('div', { class: 'field span-2' }, h('div', { class: 'label' }, 'Scope'), category),
        deviceField)),
    h('section', { class: 'form-section' }, h('h2', null, 'Firmware'), h('p', { class: 'desc' }, 'Devices running the from-version of the module are upgraded to the target version. Type, module and from-version are unique per product.'),
      h('div', { class: 'form-grid' },
        field('type', 'Type', f.type, { required: true }),
        field('identify', 'Module (identify)', f.identify, { help: 'Lierda Module, MCU index or EMU device code; Wi-Fi defaults to "default".' }),
        field('from_version', 'From version', f.from_version, { required: true }),
        field('target_version', 'Target version', f.target_version, { required: true }),
        field('target_version_url', 'Target firmware URL', f.target_version_url, { required: true, span: true }),
        field('target_version_md5', 'Target MD5', f.target_version_md5, { required: true }),
        field('target_version_size', 'Target size (bytes)', f.target_version_size, { required: true }))),
    h('section', { class: 'form-section' }, h('h2', null, 'From-version file'), h('p', { class: 'desc' }, 'Optional: give all three or none.'),
      h('div', { class: 'form-grid' },
        field('from_version_url', 'From firmware URL', f.from_version_url, { span: true }),
        field('from_version_md5', 'From MD5', f.from_version_md5),
        field('from_version_size', 'From size (bytes)', f.from_version_size))),
    h('div', { class: 'form-foot' }, h('a', { class: 'btn', href: `#/tasks?product=${enc(pid)}` }, 'Cancel'), submit));

  function setErr(name, msg) {
    const wrap = form.querySelector(`[data-field="${name}"]`);
    const err = form.querySelector(`#err-${name}`);
    if (!wrap || !err) return;
    wrap.classList.toggle('invalid', Boolean(msg));
    err.textContent = msg || '';
    err.hidden = !msg;
  }

  function validate() {
    const v = (k) => f[k].value.trim();
    const errs = {};
    const chars = (s) => [...s].length;
    if (!f.product_id.value) errs.product_id = 'Choose a product.';
    if (!v('name')) errs.name = 'Give the task a name.';
    else if (chars(v('name')) > 32) errs.name = `At most 32 characters (${chars(v('name'))} now).`;
    if (chars(f.description.value) > 250) errs.description = `At most 250 characters (${chars(f.description.value)} now).`;
    if (f.type.value !== '1' && !v('identify')) errs.identify = 'Required for MCU and sub-device tasks.';
    else if (v('identify') && !IDENT_RE.test(v('identify'))) errs.identify = '1-64 of A-Z a-z 0-9 _ . -';
    if (!v('from_version')) errs.from_version = 'Required.';
    else if (!VERSION_RE.test(v('from_version'))) errs.from_version = '1-64 printable characters, no spaces.';
    if (!v('target_version')) errs.target_version = 'Required.';
    else if (!VERSION_RE.test(v('target_version'))) errs.target_version = '1-64 printable characters, no spaces.';
    else if (v('target_version') === v('from_version')) errs.target_version = 'Must differ from the from-version.';
    if (!v('target_version_url')) errs.target_version_url = 'Required.';
    else if (!URL_RE.test(v('target_version_url'))) errs.target_version_url = 'An http:// or https:// URL.';
    if (!v('target_version_md5')) errs.target_version_md5 = 'Required.';
    else if (!MD5_RE.test(v('target_version_md5'))) errs.target_version_md5 = 'Exactly 32 hex digits.';
    if (!v('target_version_size')) errs.target_version_size = 'Required.';
    else if (!SIZE_RE.test(v('target_version_size'))) errs.target_version_size = 'A whole number of bytes.';
    const from = ['from_version_url', 'from_version_md5', 'from_version_size'];
    const given = from.filter((k) => v(k));
    if (given.length && given.length < 3) from.filter((k) => !v(k)).forEach((k) => { errs[k] = 'Give all three from-version file fields, or none.'; });
    if (v('from_version_url') && !URL_RE.test(v('from_version_url'))) errs.from_version_url = 'An http:// or https:// URL.';
    if (v('from_version_md5') && !MD5_RE.test(v('from_version_md5'))) errs.from_version_md5 = 'Exactly 32 hex digits.';
    if (v('from_version_size') && !SIZE_RE.test(v('from_version_size'))) errs.from_version_size = 'A whole number of bytes.';
    const test = radioValue('tag_type') === 1;
    const listed = test || radioValue('category') === 1;
    const devices = [...deviceBox.querySelectorAll('input[name="device"]:checked')].map((el) => el.value);
    if (listed && !devices.length) errs.device_list = test ? 'A test task needs at least one device.' : 'Pick at least one device, or choose all devices.';
    for (const k of [...Object.keys(f), 'device_list']) setErr(k, errs[k]);
    return { errs, devices, listed, test };
  }

  let tried = false;
  function summary(n) {
    replace(formAlert, h('b', null, 'Check the form:'), h('span', null, ` ${n} field${n > 1 ? 's need' : ' needs'} attention.`));
    formAlert.hidden = n === 0;
  }
  const revalidate = () => { if (tried) summary(Object.keys(validate().errs).length); };
  form.addEventListener('input', revalidate);
  form.addEventListener('change', revalidate);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    tried = true;
    formAlert.hidden = true;
    const { errs, devices, listed, test } = validate();
    const n = Object.keys(errs).length;
    if (n) {
      summary(n);
      const first = form.querySelector('.field.invalid input, .field.invalid select, .field.invalid textarea');
      if (first) first.focus();
      return;
    }
    const val = (k) => f[k].value.trim();
    const body = {
      product_id: f.product_id.value,
      name: val('name'),
      from_version: val('from_version'),
      target_version: val('target_version'),
      target_version_url: val('target_version_url'),
      target_version_md5: val('target_version_md5').toLowerCase(),
      target_version_size: val('target_version_size'),
      type: Number(f.type.value),
      task_type: radioValue('task_type'),
      tag_type: test ? 1 : 0,
      scope: { category: listed ? 1 : 0, device_list: listed ? devices : [] },
    };
    if (f.description.value.trim()) body.description = f.description.value.trim();
    if (val('from_version_url')) {
      body.from_version_url = val('from_version_url');
      body.from_version_md5 = val('from_version_md5').toLowerCase();
      body.from_version_size = val('from_version_size');
    }
    if (val('identify')) body.identify = val('identify');
    submit.disabled = true;
    try {
      const task = await post('/v2/upgrade/firmware/task', body);
      toast(`Task "${task && task.name ? task.name : body.name}" created`, 'ok');
      sessionStorage.setItem(PRODUCT_KEY, body.product_id);
      ctx.go(task && task.id !== undefined ? `#/tasks/${enc(task.id)}` : `#/tasks?product=${enc(body.product_id)}`);
    } catch (ex) {
      submit.disabled = false;
      const msg = ex instanceof ApiError ? ex.describe() : String(ex.message || ex);
      replace(formAlert, h('b', null, 'The server refused the task:'), h('span', null, ` ${msg}`));
      formAlert.hidden = false;
      // Point at the field the message names, when it names one.
      const named = Object.keys(f).concat(['device_list']).sort((a, b) => b.length - a.length).find((k) => msg.includes(k));
      if (named) setErr(named, msg);
      toastError(ex, 'Could not create the task');
      formAlert.scrollIntoView({ block: 'nearest' });
    }
  });

  replace(main,
    pageHead({ crumbs: [['OTA tasks', `#/tasks?product=${enc(pid)}`], ['New task']], title: 'New upgrade task',
      sub: 'Fields marked * are required. The task is created stopped (test) or waiting for review (production).' }),
    form);
  syncScope();
  loadDevices();
}
