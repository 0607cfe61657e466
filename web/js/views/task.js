// One OTA task: actions, review, live per-state progress, version distribution, OTA logs and operation log.
import { h, badge, replace, fmtIso, emptyState } from '../dom.js';
import { get, post, put, enc, toast, toastError } from '../api.js';
import { pageHead, button, busy, statusBadge, typeLabel, tagBadge, modeLabel, errorBox, STATES } from '../ui.js';
import { versionChart } from '../chart.js';

const POLL_MS = 1000;
const ACTION_KIND = { create: 'info plain', start: 'ok plain', stop: 'plain', submit: 'info plain', approve: 'ok plain',
  reject: 'bad plain', 'to-production': 'violet plain', devices: 'plain', push: 'info plain', report: 'plain' };

export function logStatus(v) {
  return Number(v) === 2 ? badge('Done', 'ok') : Number(v) === 1 ? badge('Sent', 'info') : badge(String(v ?? '?'));
}

export function otaLogTable(list, { showTask = true } = {}) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('thead', null, h('tr', null, ['ID', 'Time', showTask ? 'Task' : null, 'Product', 'Device', 'MAC', 'SN', 'Status'].filter(Boolean).map((t) => h('th', null, t)))),
    h('tbody', null, list.map((l) => h('tr', { dataset: { key: String(l.id ?? '') } },
      h('td', { class: 'mono' }, String(l.id ?? '')),
      h('td', null, fmtIso(l.execute_time)),
      showTask ? h('td', null, h('a', { href: `#/tasks/${enc(l.task_id)}` }, `#${l.task_id}`)) : null,
      h('td', { class: 'mono' }, String(l.product_id ?? '')),
      h('td', { class: 'mono' }, String(l.device_id ?? '')),
      h('td', { class: 'mono' }, l.device_mac ? String(l.device_mac) : '—'),
      h('td', { class: 'mono' }, l.device_sn ? String(l.device_sn) : '—'),
      h('td', null, logStatus(l.status)))))));
}

export async function taskView(ctx, main) {
  const id = ctx.params[0];
  let task;
  try {
    task = await get(`/v2/upgrade/firmware/tasks/${enc(id)}`);
  } catch (e) {
    if (!ctx.alive()) return;
    replace(main, pageHead({ crumbs: [['OTA tasks', '#/tasks']], title: `Task ${id}` }), errorBox(e, 'Could not load the task'));
    return;
  }
  if (!ctx.alive()) return;

  const head = h('div', { id: 'task-head' });
  const review = h('div', { id: 'task-review' });
  const progress = h('div', { class: 'card', id: 'task-progress' });
  const chartBody = h('div', { class: 'card-body', id: 'chart-body' }, h('div', { class: 'loading' }, 'Loading…'));
  const details = h('div', { class: 'card-body' });
  const devicesCard = h('div', { id: 'task-devices' });
  const logsBody = h('div', { id: 'task-ota-logs' }, h('div', { class: 'loading' }, 'Loading…'));
  const oplogBody = h('div', { id: 'task-oplog' }, h('div', { class: 'loading' }, 'Loading…'));

  // ---------- progress ----------
  const tiles = {};
  const segs = {};
  for (const [key, label, color] of STATES) {
    tiles[key] = h('div', { class: 'n', id: `state-${key}` }, '–');
    segs[key] = h('span', { style: `background:${color};width:0%`, title: label });
  }
  const liveBadge = h('span', { id: 'live-badge' });
  const updated = h('span', { id: 'progress-updated' }, '');
  const progressErr = h('div', { id: 'progress-error' });
  replace(progress,
    h('div', { class: 'card-head' }, h('div', { class: 'title-row' }, h('h2', null, 'Rollout progress'), liveBadge),
      h('div', { class: 'live-note' }, updated)),
    h('div', { class: 'card-body' },
      progressErr,
      h('div', { class: 'stats' }, STATES.map(([key, label, color]) => h('div', { class: 'stat', style: `--c:${color}`, dataset: { state: key } }, tiles[key], h('div', { class: 'l' }, label)))),
      h('div', { class: 'progress-bar', 'aria-hidden': 'true' }, STATES.map(([key]) => segs[key])),
      h('div', { class: 'legend' }, STATES.map(([, label, color]) => h('span', null, h('i', { style: `background:${color}` }), label)))));

  let lastCounts = '';
  let inflight = false;
  async function poll() {
    if (inflight || !ctx.alive()) return;
    inflight = true;
    try {
      const p = await get(`/v2/upgrade/firmware/tasks/${enc(id)}/progress`);
      if (!ctx.alive()) return;
      replace(progressErr);
      const by = (p && p.devices_by_state) || {};
      const total = STATES.reduce((a, [k]) => a + (Number(by[k]) || 0), 0);
      for (const [key] of STATES) {
        const n = Number(by[key]) || 0;
        tiles[key].textContent = String(n);
        segs[key].style.width = total ? `${(n / total) * 100}%` : '0%';
      }
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every second`;
      const counts = JSON.stringify(by);
      if (p && p.status !== undefined && String(p.status) !== String(task.status)) {
        await reloadTask();
      }
      if (counts !== lastCounts) {
        const first = lastCounts === '';
        lastCounts = counts;
        if (!first) { loadChart(); loadLogs(); loadOplog(); refreshCount(); }
      }
    } catch (e) {
      if (ctx.alive()) replace(progressErr, h('div', { style: 'margin-bottom:12px' }, errorBox(e, 'Progress unavailable')));
    } finally {
      inflight = false;
    }
  }

  async function refreshCount() {
    try {
      const t = await get(`/v2/upgrade/firmware/tasks/${enc(id)}`);
      if (!ctx.alive()) return;
      task = t;
      renderDetails();
    } catch (e) { /* the next change retries */ }
  }

  // ---------- version distribution ----------
  let chartData = null;
  function drawChart() {
    if (!chartData) return;
    const width = chartBody.clientWidth - 32;  // the card body's padding
    replace(chartBody, versionChart({ ratios: chartData.ratios, total: chartData.total, width,
      fromVersion: String(task.from_version), targetVersion: String(task.target_version) }));
  }
  let resizeTimer = null;
  const onResize = () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawChart, 150); };
  window.addEventListener('resize', onResize);
  ctx.onCleanup(() => { window.removeEventListener('resize', onResize); clearTimeout(resizeTimer); });
  async function loadChart() {
    try {
      const d = await get(`/v2/statistics/ota/customize-task/${enc(id)}/device-firmware-version`);
      if (!ctx.alive()) return;
      chartData = d || {};
      drawChart();
    } catch (e) {
      if (ctx.alive()) replace(chartBody, errorBox(e, 'Could not load the version distribution'));
    }
  }

  // ---------- logs ----------
  async function loadLogs() {
    try {
      const d = await post('/v2/upgrade/ota-logs', { offset: 0, limit: 20, query: { task_id: { $eq: String(id) } }, order: { id: 'desc' } });
      if (!ctx.alive()) return;
      const list = Array.isArray(d?.list) ? d.list : [];
      replace(logsBody, list.length ? [otaLogTable(list, { showTask: false }),
        Number(d.count) > list.length ? h('div', { class: 'pager' }, `Latest ${list.length} of ${d.count}`, h('a', { href: `#/logs?task=${enc(id)}` }, 'All logs of this task →')) : null]
        : emptyState('inbox', 'No OTA logs yet', 'A log is written when a device acknowledges the notification and when it reaches the target version.'));
    } catch (e) {
      if (ctx.alive()) replace(logsBody, h('div', { class: 'card-body' }, errorBox(e, 'Could not load the OTA logs')));
    }
  }
  async function loadOplog() {
    try {
      // oldest first, 100 a page at most: show the newest 100, newest first
      let d = await get(`/v2/upgrade/firmware/tasks/${enc(id)}/op-logs?offset=0&limit=100`);
      if (Number(d?.count) > 100) d = await get(`/v2/upgrade/firmware/tasks/${enc(id)}/op-logs?offset=${Number(d.count) - 100}&limit=100`);
      if (!ctx.alive()) return;
      const list = Array.isArray(d?.list) ? d.list.slice().reverse() : [];
      replace(oplogBody, list.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
        h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Operator'), h('th', null, 'Action'), h('th', null, 'What happened'))),
        h('tbody', null, list.map((l) => h('tr', null,
          h('td', { style: 'white-space:nowrap' }, fmtIso(l.create_date)),
          h('td', null, h('b', null, String(l.opt_name || l.opt_account || l.opt_id || '—'))),
          h('td', null, l.action ? badge(String(l.action), ACTION_KIND[l.action] || 'plain') : '—'),
          h('td', null, String(l.content ?? ''))))))) : emptyState('list', 'No operations yet', ''));
    } catch (e) {
      if (ctx.alive()) replace(oplogBody, h('div', { class: 'card-body' }, errorBox(e, 'Could not load the operation log')));
    }
  }

  // ---------- actions ----------
  async function reloadTask() {
    try {
      const t = await get(`/v2/upgrade/firmware/tasks/${enc(id)}`);
      if (!ctx.alive()) return;
      task = t;
      render();
    } catch (e) {
      if (ctx.alive()) toastError(e, 'Could not reload the task');
    }
  }
  async function act(btn, what, fn, okText) {
    const r = await busy(btn, fn, what);
    if (r === undefined) return false;
    toast(okText, 'ok');
    await reloadTask();
    loadOplog();
    poll();
    return true;
  }
  const setStatus = (btn, status) => act(btn, status ? 'Could not start the task' : 'Could not stop the task',
    () => post('/v2/upgrade/firmware/task/status', { product_id: task.product_id, upgrade_task_id: String(task.id), status }),
    status ? 'Task started' : 'Task stopped');

  function headActions() {
    const st = Number(task.status);
    const out = [];
    if (st === 1) out.push(button('Stop', { iconName: 'stop', attrs: { id: 'btn-stop' }, onClick: (e) => setStatus(e.currentTarget, 0) }));
    else if (st === 0) out.push(button('Start', { kind: 'ok', iconName: 'play', attrs: { id: 'btn-start' }, onClick: (e) => setStatus(e.currentTarget, 1) }));
    const del = button('Delete', { kind: 'danger', iconName: 'trash', attrs: { id: 'btn-delete' } });
    del.addEventListener('click', async () => {
      if (!window.confirm(`Delete task ${task.id} "${task.name}"? Its progress and logs stay in the OTA logs only.`)) return;
      const r = await busy(del, () => post('/v2/upgrade/firmware/task/delete', { id: String(task.id), product_id: task.product_id }), 'Could not delete the task');
      if (r !== undefined) { toast('Task deleted', 'ok'); ctx.go(`#/tasks?product=${enc(task.product_id)}`); }
    });
    out.push(del);
    return out;
  }

  function renderHead() {
    document.title = `${task.name} · OTA task · iotgate console`;
    replace(head, pageHead({
      crumbs: [['OTA tasks', `#/tasks?product=${enc(task.product_id)}`], [String(task.product_id), `#/products/${enc(task.product_id)}`], [`#${task.id}`]],
      title: task.name || `Task ${task.id}`,
      titleExtra: [h('span', { id: 'task-status' }, statusBadge(task.status)), tagBadge(task.tag_type)],
      sub: [h('span', { class: 'mono' }, `${task.from_version} → ${task.target_version}`), ` · ${typeLabel(task.type)} module `, h('span', { class: 'mono' }, String(task.identify ?? '')),
        ` · ${modeLabel(task.task_type)} · product `, h('span', { class: 'mono' }, String(task.product_id))],
      actions: headActions(),
    }));
  }

  function renderReview() {
    const st = Number(task.status);
    const tag = Number(task.tag_type);
    const reviewer = task.audit_member_id ? String(task.audit_member_id) : '';
    let body;
    if (tag === 1) {
      const all = h('input', { type: 'checkbox', id: 'prod-all', checked: true });
      const go = button('Move to production', { iconName: 'flag', attrs: { id: 'btn-to-production' } });
      go.addEventListener('click', () => act(go, 'Could not move the task to production',
        () => put(`/v2/upgrade/firmware/tasks/${enc(task.id)}/product-tag`, all.checked ? { scope: { category: 0, device_list: [] } } : {}),
        'Task is now a production task, waiting for review'));
      body = h('div', { class: 'review-box' },
        h('span', null, 'This is a ', h('b', null, 'test task'), ': it reaches only its listed devices. When it has proven itself, make it a production task (it then needs a review).'),
        h('label', { class: 'sub' }, all, ' roll out to every device of the product'), go);
    } else if (st === 2) {
      const who = h('input', { class: 'input', id: 'reviewer', placeholder: 'member name, e.g. bob', style: 'width:220px', autocomplete: 'off', 'aria-label': 'Reviewer' });
      const send = button('Submit for review', { kind: 'primary', iconName: 'send', attrs: { id: 'btn-submit-review' } });
      const err = h('span', { class: 'err', id: 'reviewer-error', style: 'color:var(--bad)' });
      send.addEventListener('click', () => {
        const m = who.value.trim();
        if (!m) { err.textContent = 'Name the member who reviews this task.'; who.focus(); return; }
        err.textContent = '';
        act(send, 'Could not submit the task', () => put(`/v2/upgrade/firmware/tasks/${enc(task.id)}/submit-audit`, { audit_member_id: m }), `Submitted to ${m} for review`);
      });
      body = h('div', { class: 'review-box' }, h('span', null, 'Production tasks run after a review. Reviewer:'), who, send, err);
    } else if (st === 3) {
      const mine = reviewer !== '' && reviewer === String(ctx.member || '');
      const why = mine ? 'You are the reviewer of this task.' : `Only ${reviewer || 'the named reviewer'} can approve or reject this task; you are signed in as ${ctx.member || 'someone else'}.`;
      const mk = (label, kind, iconName, result, idName) => {
        const b = button(label, { kind, iconName, attrs: { id: idName, 'aria-disabled': mine ? null : 'true', title: mine ? null : why } });
        b.addEventListener('click', () => {
          if (!mine) { toast(why, 'error'); return; }
          act(b, `Could not ${label.toLowerCase()} the task`, () => put(`/v2/upgrade/firmware/tasks/${enc(task.id)}/audit`, { audit_result: result }),
            result === 1 ? 'Approved: the task is running' : 'Rejected: the task is back to waiting');
        });
        return b;
      };
      body = h('div', { class: 'review-box' },
        h('span', null, 'Waiting for review by ', h('b', { id: 'task-reviewer' }, reviewer || '—'), '.'),
        mk('Approve', 'ok', 'check', 1, 'btn-approve'), mk('Reject', 'danger', 'x', 2, 'btn-reject'),
        h('span', { class: 'why', id: 'review-why' }, why));
    } else {
      body = h('div', { class: 'review-box' }, h('span', null,
        String(task.approved) === '1' ? 'Review: approved. The task may be stopped and started again.' : 'Production task.'));
    }
    // a review to act on goes above the progress, anything else below it
    const top = tag === 0 && (st === 2 || st === 3);
    if (review.parentNode && (review.previousElementSibling === progress) === top) {
      if (top) progress.before(review); else progress.after(review);
    }
    review.style.margin = top ? '0 0 16px' : '16px 0 0';
    replace(review, h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, tag === 1 ? 'Test → production' : 'Review'), reviewer && st === 3 ? badge('In review', 'info') : null),
      h('div', { class: 'card-body' }, body)));
  }

  function renderDetails() {
    const scope = task.scope || {};
    const list = Array.isArray(scope.device_list) ? scope.device_list : [];
    const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
    const file = (u, m, sz) => (u ? h('div', null, h('div', { class: 'mono' }, String(u)), h('div', { class: 'sub mono' }, `md5 ${m || '—'} · ${sz || '?'} bytes`)) : '—');
    replace(details, h('dl', { class: 'kv' },
      row('Task ID', h('span', { class: 'mono' }, String(task.id))),
      row('Description', task.description ? String(task.description) : h('span', { class: 'sub' }, 'none')),
      row('Upgraded', h('span', { id: 'upgrade-count' }, `${task.upgrade_count ?? 0} device(s)`, task.surplus_count !== undefined ? ` · ${task.surplus_count} still on ${task.from_version}` : '')),
      row('Scope', Number(scope.category) === 1 ? `${list.length} listed device(s)` : 'All devices of the product'),
      row('Target file', file(task.target_version_url, task.target_version_md5, task.target_version_size)),
      row('From file', file(task.from_version_url, task.from_version_md5, task.from_version_size)),
      row('Reviewer', task.audit_member_id ? String(task.audit_member_id) : '—'),
      row('Created', fmtIso(task.create_time))));
    renderDevices(list);
  }

  function renderDevices(list) {
    if (Number(task.tag_type) !== 1 && Number((task.scope || {}).category) !== 1) { replace(devicesCard); return; }
    const opt = h('select', { id: 'devices-opt', 'aria-label': 'Change' }, h('option', { value: '1' }, 'Add'), h('option', { value: '2' }, 'Remove'), h('option', { value: '3' }, 'Replace with'));
    const ids = h('input', { class: 'input', id: 'devices-ids', placeholder: 'device ids, comma-separated', style: 'flex:1;min-width:220px' });
    const apply = button('Apply', { attrs: { id: 'btn-devices' } });
    apply.addEventListener('click', async () => {
      const device_list = ids.value.split(/[\s,]+/).filter(Boolean);
      if (!device_list.length) { toast('Enter at least one device id', 'error'); ids.focus(); return; }
      const ok = await act(apply, 'Could not change the devices', () => put(`/v2/upgrade/firmware/tasks/${enc(task.id)}/devices`, { opt: Number(opt.value), device_list }), 'Devices updated');
      if (ok) ids.value = '';
    });
    replace(devicesCard, h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'Listed devices'), h('span', { class: 'hint' }, `${list.length} device(s)`)),
      h('div', { class: 'card-body' },
        list.length ? h('div', { class: 'chips', style: 'margin-bottom:12px' }, list.map((d) => h('span', { class: 'chip' }, String(d)))) : h('p', { class: 'sub' }, 'No devices listed.'),
        Number(task.tag_type) === 1 ? h('div', { class: 'toolbar' }, opt, ids, apply) : null)));
  }

  function render() {
    renderHead();
    renderReview();
    renderDetails();
    const st = Number(task.status);
    replace(liveBadge, st === 1 ? badge('Live', 'ok live') : badge(st === 0 ? 'Stopped' : st === 2 ? 'Not started' : 'Awaiting review'));
  }

  render();
  replace(main, head, review, progress,
    h('div', { class: 'grid-2' },
      h('div', { class: 'card', id: 'chart-card' }, h('div', { class: 'card-head' }, h('h2', null, 'Version distribution'), h('span', { class: 'hint' }, 'devices per reported version')), chartBody),
      h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Details')), details)),
    h('div', { style: 'margin-top:16px' }, devicesCard),
    h('div', { class: 'card', style: 'margin-top:16px', id: 'ota-logs-card' }, h('div', { class: 'card-head' }, h('h2', null, 'OTA logs'), h('a', { href: `#/logs?task=${enc(id)}`, class: 'hint' }, 'Open in OTA logs')), logsBody),
    h('div', { class: 'card', id: 'oplog-card' }, h('div', { class: 'card-head' }, h('h2', null, 'Operation log'), h('span', { class: 'hint' }, 'every change to the task')), oplogBody));
  renderReview();  // now that it is in the page: above or below the progress

  poll();
  loadChart();
  loadLogs();
  loadOplog();
  const timer = setInterval(poll, POLL_MS);
  ctx.onCleanup(() => clearInterval(timer));
}
