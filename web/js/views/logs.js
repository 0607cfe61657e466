// OTA logs (seed 002 op 9): every "sent" and "done" of every task, filtered by task, device and status.
import { h, replace, emptyState, fmtIso } from '../dom.js';
import { post, enc } from '../api.js';
import { pageHead, pagedTable, button } from '../ui.js';
import { logStatus } from './task.js';

export async function logsView(ctx, main) {
  document.title = 'OTA logs · iotgate console';
  const task = h('input', { class: 'input', id: 'log-task', placeholder: 'Task ID', value: ctx.query.get('task') || '', style: 'width:110px', 'aria-label': 'Task ID' });
  const device = h('input', { class: 'input', id: 'log-device', placeholder: 'Device ID contains…', style: 'width:220px', 'aria-label': 'Device ID' });
  const status = h('select', { id: 'log-status', 'aria-label': 'Status' }, h('option', { value: '' }, 'Any status'), h('option', { value: '1' }, 'Sent'), h('option', { value: '2' }, 'Done'));
  const filtered = () => Boolean(task.value.trim() || device.value.trim() || status.value);

  const table = pagedTable({
    ctx,
    id: 'logs-table',
    fetchPage: (offset, limit) => {
      const query = {};
      if (task.value.trim()) query.task_id = { $eq: task.value.trim() };
      if (device.value.trim()) query.device_id = { $like: device.value.trim() };
      if (status.value) query.status = { $eq: Number(status.value) };
      const body = { offset, limit, order: { id: 'desc' } };
      if (Object.keys(query).length) body.query = query;
      return post('/v2/upgrade/ota-logs', body);
    },
    empty: () => emptyState('inbox', 'No OTA logs', filtered()
      ? 'Nothing matches these filters.' : 'Logs appear when devices acknowledge an upgrade and when they reach the target version.'),
    columns: [
      { title: 'ID', class: 'num', cell: (l) => h('span', { class: 'mono' }, String(l.id ?? '')) },
      { title: 'Time', cell: (l) => fmtIso(l.execute_time) },
      { title: 'Task', cell: (l) => h('a', { href: `#/tasks/${enc(l.task_id)}`, class: 'rowlink' }, `#${l.task_id}`) },
      { title: 'Product', cell: (l) => h('span', { class: 'mono' }, String(l.product_id ?? '')) },
      { title: 'Device', cell: (l) => h('span', { class: 'mono' }, String(l.device_id ?? '')) },
      { title: 'MAC', cell: (l) => h('span', { class: 'mono' }, l.device_mac ? String(l.device_mac) : '—') },
      { title: 'SN', cell: (l) => h('span', { class: 'mono' }, l.device_sn ? String(l.device_sn) : '—') },
      { title: 'Status', cell: (l) => logStatus(l.status) },
    ],
  });
  let debounce = null;
  const reload = () => { clearTimeout(debounce); debounce = setTimeout(() => table.reload(), 250); };
  [task, device].forEach((el) => { el.addEventListener('input', reload); el.addEventListener('change', reload); });
  status.addEventListener('change', () => table.reload());
  ctx.onCleanup(() => clearTimeout(debounce));

  replace(main,
    pageHead({ title: 'OTA logs', sub: 'One entry when a device acknowledges an upgrade (sent), one when it reaches the target version (done).',
      actions: [button('Refresh', { iconName: 'refresh', onClick: () => table.reload() })] }),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('div', { class: 'toolbar' }, task, device, status,
        button('Clear', { small: true, attrs: { id: 'log-clear' }, onClick: () => { task.value = ''; device.value = ''; status.value = ''; table.reload(); } }))),
      table.el));
}
