// Products and their devices.
import { h, badge, replace, timeCell, truthy, emptyState, icon } from '../dom.js';
import { get, put, enc, toast } from '../api.js';
import { pageHead, pagedTable, button, busy } from '../ui.js';

const PROTOCOLS = { lierda: 'Lierda X v2.0', krt: 'KRT cloud', emu: 'Wudun EMU' };

export async function productsView(ctx, main) {
  document.title = 'Products · iotgate console';
  const table = pagedTable({
    ctx,
    id: 'products-table',
    fetchPage: (offset, limit) => get(`/v2/products?offset=${offset}&limit=${limit}`),
    empty: () => emptyState('box', 'No products yet', 'Add one with scripts/iotgate product add …, then reload.'),
    columns: [
      { title: 'Product', cell: (p) => h('a', { class: 'rowlink mono', href: `#/products/${enc(p.product_id)}` }, p.product_id) },
      { title: 'Protocol', cell: (p) => h('span', null, PROTOCOLS[p.protocol] || String(p.protocol ?? '')) },
      { title: 'State', cell: (p) => (truthy(p.enabled) ? badge('Enabled', 'ok') : badge('Disabled', 'bad')) },
      { title: 'Devices', class: 'num', cell: (p) => String(p.device_count ?? '—') },
      {
        title: '', class: 'actions', cell: (p) => [
          h('a', { class: 'btn small', href: `#/products/${enc(p.product_id)}` }, 'Devices'), ' ',
          h('a', { class: 'btn small', href: `#/tasks?product=${enc(p.product_id)}` }, 'OTA tasks'),
        ],
      },
    ],
  });
  replace(main,
    pageHead({ title: 'Products', sub: 'Every product registered in iotgate, with its protocol and fleet size.',
      actions: [button('Refresh', { iconName: 'refresh', onClick: () => table.reload() })] }),
    h('div', { class: 'card' }, table.el));
}

function versionsCell(v) {
  const entries = v && typeof v === 'object' ? Object.entries(v).filter(([k]) => k !== 'updated_at' && !k.startsWith('hw:')) : [];
  if (!entries.length) return h('span', { class: 'sub' }, 'not reported');
  return h('div', { class: 'chips' }, entries.map(([mod, ver]) => h('span', { class: 'chip', title: `module ${mod}` },
    h('span', { class: 'k' }, mod === 'default' ? 'fw' : mod), String(ver))));
}

export async function devicesView(ctx, main) {
  const pid = ctx.params[0];
  document.title = `${pid} · Devices · iotgate console`;
  let timer = null;
  const table = pagedTable({
    ctx,
    id: 'devices-table',
    fetchPage: (offset, limit) => get(`/v2/products/${enc(pid)}/devices?offset=${offset}&limit=${limit}`),
    empty: () => emptyState('chip', 'No devices in this product', 'Add devices with scripts/iotgate device add …'),
    rowClass: (d) => (truthy(d.enabled) ? null : 'row-disabled'),
    columns: [
      { title: 'Device', cell: (d) => h('span', { class: 'mono rowlink' }, d.device_id) },
      { title: 'Connection', cell: (d) => (truthy(d.online) ? badge('Online', 'ok') : badge('Offline')) },
      { title: 'Enabled', cell: (d) => (truthy(d.enabled) ? badge('Enabled', 'ok plain') : badge('Disabled', 'bad plain')) },
      { title: 'Last online', cell: (d) => timeCell(d.last_online) },
      { title: 'Last offline', cell: (d) => timeCell(d.last_offline) },
      { title: 'Reported versions', cell: (d) => versionsCell(d.versions) },
      {
        title: '', class: 'actions', cell: (d, reload) => {
          const on = truthy(d.enabled);
          const b = button(on ? 'Disable' : 'Enable', { small: true, kind: on ? 'danger' : '', attrs: { 'data-action': on ? 'disable' : 'enable' } });
          b.addEventListener('click', async () => {
            const ok = await busy(b, () => put(`/v2/products/${enc(pid)}/devices/${enc(d.device_id)}/enabled`, { enabled: !on }),
              `Could not ${on ? 'disable' : 'enable'} ${d.device_id}`);
            if (ok !== undefined) {
              toast(`${d.device_id} ${on ? 'disabled: it is disconnected and cannot log in' : 'enabled'}`, 'ok');
              reload();
            }
          });
          return b;
        },
      },
    ],
  });
  replace(main,
    pageHead({ crumbs: [['Products', '#/products'], [pid]], title: pid,
      sub: 'Devices of this product: connection state, last login and disconnect, and the firmware versions they reported.',
      actions: [
        h('a', { class: 'btn', href: `#/tasks?product=${enc(pid)}` }, icon('upload'), 'OTA tasks'),
        button('Refresh', { iconName: 'refresh', onClick: () => table.reload() }),
      ] }),
    h('div', { class: 'card' }, table.el),
    h('p', { class: 'live-note', style: 'margin-top:10px' }, 'Connection state refreshes every 5 seconds.'));
  timer = setInterval(() => { if (document.visibilityState === 'visible') table.reload(); }, 5000);
  ctx.onCleanup(() => clearInterval(timer));
}
