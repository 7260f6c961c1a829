// The courier web app (mobile first, installable, offline first). Actions
// are queued on the device before they are sent: taken without network they
// stay in the queue, visible as pending, and are sent in order when the
// network is back, each under its own Idempotency-Key so a replay whose
// first answer was lost is answered again instead of acting twice.
import './courier.css';
import { Api, ApiError, NetworkError, newKey } from './common/api';
import { applyTexts, el, fmtCountdown, fmtMAD, fmtNum, fmtTime, initI18n, langSwitch, onLangChange, t } from './common/i18n';

interface Place { lat: number; lng: number; address?: string }
interface Task {
  order_id: string; status: string; offer: boolean; offer_expires_at?: string; pickup: Place; dropoff: Place; promise_by: string;
  parcel_size: string; cod_amount_mad: number; customer: { first_name: string; phone_masked: string }; notes?: string;
}
interface Stop { order_id: string; kind: string; lat: number; lng: number; eta: string; late: boolean }
interface Queued { key: string; order: string; action: string; body?: unknown; at: number; label: string }
interface Rejected { order: string; action: string; message: string; at: number }

const REASONS = ['CUSTOMER_UNAVAILABLE', 'CUSTOMER_REFUSED', 'ADDRESS_NOT_FOUND', 'ADDRESS_INACCESSIBLE', 'DAMAGED', 'COD_NOT_AVAILABLE', 'UNSAFE_LOCATION', 'BUSINESS_CLOSED', 'COURIER_INCIDENT'];
const api = new Api(localStorage, 'tawsil.courier');
const QKEY = 'tawsil.courier.queue', TKEY = 'tawsil.courier.tasks', RKEY = 'tawsil.courier.rejected';
const root = document.getElementById('app')!;

let tasks: Task[] = load(TKEY, { tasks: [], route: { stops: [] } }).tasks;
let stops: Stop[] = load(TKEY, { tasks: [], route: { stops: [] } }).route.stops;
let queue: Queued[] = load(QKEY, []);
let rejected: Rejected[] = load(RKEY, []);
let onShift: boolean | null = null;
let online = navigator.onLine;
let flushing = false;
let openForm = '';

function load<T>(key: string, def: T): T { try { return JSON.parse(localStorage.getItem(key) || '') as T; } catch { return def; } }
function save(key: string, v: unknown): void { localStorage.setItem(key, JSON.stringify(v)); }

async function main(): Promise<void> {
  if ('serviceWorker' in navigator) void navigator.serviceWorker.register('/courier/sw.js', { scope: '/courier/' }).catch(() => undefined);
  try { await initI18n(); } catch { /* offline first start: the service worker has the texts cached; keys show otherwise */ }
  onLangChange(render);
  window.addEventListener('online', () => { online = true; render(); void flush(); void refresh(); });
  window.addEventListener('offline', () => { online = false; render(); });
  setInterval(() => { void flush(); void refresh(); }, 10000);
  render();
  if (api.session) { void flush(); void refresh(); }
}

async function refresh(): Promise<void> {
  if (!api.session || flushing || queue.length) return; // the server's view would undo what is still pending
  try {
    const r = await api.call<{ tasks: Task[]; route: { stops: Stop[] } }>('GET', '/v1/me/tasks');
    tasks = r.tasks; stops = r.route.stops || [];
    save(TKEY, r);
    online = true;
  } catch (e) {
    if (e instanceof NetworkError) online = false;
    else if (e instanceof ApiError && e.status === 401) api.logout();
  }
  render();
}

// ---- the queue ------------------------------------------------------------------------------------
function enqueue(order: string, action: string, body: unknown, label: string, local: (t: Task) => void): void {
  queue.push({ key: newKey(), order, action, body, at: Date.now(), label });
  save(QKEY, queue);
  const task = tasks.find(x => x.order_id === order);
  if (task) local(task);
  tasks = tasks.filter(x => !['delivered', 'declined'].includes(x.status));
  save(TKEY, { tasks, route: { stops } });
  openForm = '';
  render();
  void flush();
}

/** flush sends the queue in order; it stops at the first action that gets no answer. */
async function flush(): Promise<void> {
  if (flushing || !queue.length || !api.session) return;
  flushing = true;
  try {
    while (queue.length) {
      const q = queue[0];
      try {
        await api.call('POST', `/v1/orders/${q.order}/${q.action}`, q.body, { 'Idempotency-Key': q.key });
        online = true;
      } catch (e) {
        if (e instanceof NetworkError) { online = false; break; }
        if (e instanceof ApiError && (e.status >= 500 || e.status === 429 || (e.status === 409 && String(e.problem.type).endsWith('/idempotency-key-in-progress')))) break;
        if (e instanceof ApiError && e.status === 401) { break; }
        rejected.unshift({ order: q.order, action: q.label, message: e instanceof ApiError ? `${e.problem.title} — ${e.problem.detail || ''}` : String(e), at: Date.now() });
        rejected = rejected.slice(0, 10);
        save(RKEY, rejected);
      }
      queue.shift();
      save(QKEY, queue);
      render();
    }
  } finally {
    flushing = false;
  }
  render();
  if (!queue.length) void refresh();
}

// ---- views ----------------------------------------------------------------------------------------
function render(): void {
  root.replaceChildren(api.session ? appView() : loginView());
  applyTexts(root);
}

function loginView(): HTMLElement {
  const email = el('input', { type: 'email', id: 'email', autocomplete: 'username', required: true, inputmode: 'email' });
  const pw = el('input', { type: 'password', id: 'password', autocomplete: 'current-password', required: true });
  const err = el('p', { class: 'error', role: 'alert' });
  const form = el('form', { class: 'card login' }, el('h1', { 'data-i18n': 'courier.title' }),
    el('label', { for: 'email', 'data-i18n': 'login.email' }), email, el('label', { for: 'password', 'data-i18n': 'login.password' }), pw,
    el('button', { type: 'submit', class: 'primary big', 'data-i18n': 'login.submit' }), err);
  form.addEventListener('submit', async e => {
    e.preventDefault();
    try {
      const s = await api.login(email.value.trim(), pw.value);
      if (s.role !== 'courier') { api.logout(); err.textContent = t('courier.not_courier'); return; }
      render(); void refresh();
    } catch (x) { err.textContent = x instanceof ApiError ? x.message : t('error.network'); }
  });
  return el('div', { class: 'page' }, el('header', { class: 'bar' }, el('strong', { 'data-i18n': 'app.name' }), el('span', { class: 'grow' }), langSwitch()), form);
}

function appView(): HTMLElement {
  const shift = el('button', { type: 'button', class: 'shift' + (onShift ? ' on' : ''), id: 'shift' }, t(onShift === false ? 'courier.shift_start' : 'courier.shift_end'));
  shift.addEventListener('click', async () => {
    const next = onShift === false;
    try { await api.call('POST', '/v1/me/shift', { on_duty: next }); onShift = next; render(); } catch (e) { alert(e instanceof ApiError ? e.message : t('error.network')); }
  });
  const logout = el('button', { type: 'button', class: 'link', 'data-i18n': 'login.logout' });
  logout.addEventListener('click', () => { if (!queue.length || confirm(t('courier.logout_pending'))) { api.logout(); render(); } });
  const net = el('span', { class: 'net ' + (online ? 'online' : 'offline'), id: 'net', 'data-online': String(online) }, t(online ? 'courier.online' : 'courier.offline'));
  return el('div', { class: 'page' },
    el('header', { class: 'bar' }, el('strong', { 'data-i18n': 'courier.title' }), net, el('span', { class: 'grow' }), langSwitch(), logout),
    el('div', { class: 'toolbar' }, shift, el('button', { type: 'button', class: 'link', id: 'reload' }, t('courier.refresh'))),
    pendingView(),
    rejected.length ? el('section', { class: 'card rejected', id: 'rejected' }, el('h2', {}, t('courier.rejected')),
      ...rejected.map(r => el('p', {}, `${fmtTime(r.at)} · ${r.action} · `, el('bdi', {}, r.order.slice(-6)), ` — ${r.message}`))) : null,
    el('h2', { class: 'section' }, t('courier.tasks'), ' ', el('span', { class: 'n' }, fmtNum(tasks.length))),
    tasks.length ? el('div', { class: 'tasks', id: 'tasks' }, ...tasks.map(taskCard)) : el('p', { class: 'empty card' }, t('courier.no_tasks')),
    stops.length ? el('section', { class: 'card route', id: 'route' }, el('h2', {}, t('courier.route')),
      el('ol', {}, ...stops.map(s => el('li', { class: s.late ? 'late' : '' }, `${t('stop.' + s.kind)} · `, el('bdi', {}, s.order_id.slice(-6)), ` · ${fmtTime(s.eta)}`)))) : null,
  );
}

function pendingView(): HTMLElement | null {
  if (!queue.length) return null;
  return el('section', { class: 'card pending', id: 'pending', 'data-count': String(queue.length) },
    el('h2', {}, t('courier.pending', { n: fmtNum(queue.length) })),
    el('p', { class: 'hint' }, t(online ? 'courier.pending_sending' : 'courier.pending_offline')),
    el('ol', {}, ...queue.map(q => el('li', {}, `${fmtTime(q.at)} · ${q.label} · `, el('bdi', {}, q.order.slice(-6))))));
}

function taskCard(task: Task): HTMLElement {
  const id = task.order_id;
  const pendingHere = queue.some(q => q.order === id);
  const card = el('article', { class: 'card task s-' + task.status, 'data-order': id, 'data-status': task.status },
    el('div', { class: 'task-head' }, el('span', { class: 'badge' }, t(task.offer ? 'courier.offer' : 'status.' + task.status)),
      el('bdi', { class: 'id' }, id.slice(-6)), el('span', { class: 'grow' }), el('span', { class: 'countdown' }, fmtCountdown(task.promise_by))),
    el('p', {}, el('span', { class: 'label' }, t('order.pickup')), ' ', task.pickup.address || '—'),
    el('p', {}, el('span', { class: 'label' }, t('order.dropoff')), ' ', task.dropoff.address || '—'),
    el('p', {}, el('span', { class: 'label' }, t('courier.customer')), ' ', task.customer.first_name || '—', ' · ', el('bdi', {}, task.customer.phone_masked)),
    task.cod_amount_mad > 0 ? el('p', { class: 'cod' }, t('courier.cash_to_collect', { amount: fmtMAD(task.cod_amount_mad) })) : null,
    task.notes ? el('p', { class: 'notes' }, task.notes) : null,
    task.offer && task.offer_expires_at ? el('p', { class: 'hint' }, t('courier.offer_expires', { time: fmtTime(task.offer_expires_at) })) : null,
    pendingHere ? el('p', { class: 'hint pending-mark' }, t('courier.action_pending')) : null,
  );
  const acts = el('div', { class: 'actions' });
  const btn = (key: string, cls: string, fn: () => void): HTMLButtonElement => {
    const b = el('button', { type: 'button', class: cls + ' big', 'data-action': key }, t('courier.do.' + key));
    b.addEventListener('click', fn);
    return b;
  };
  if (task.offer) {
    acts.append(btn('accept', 'primary', () => enqueue(id, 'accept', undefined, t('courier.do.accept'), x => { x.offer = false; x.status = 'assigned'; })),
      btn('decline', '', () => enqueue(id, 'decline', { reason: 'courier declined' }, t('courier.do.decline'), x => { x.status = 'declined'; })));
  } else if (task.status === 'assigned') {
    acts.append(btn('pickup', 'primary', () => enqueue(id, 'pickup', undefined, t('courier.do.pickup'), x => { x.status = 'picked_up'; })));
  } else if (task.status === 'picked_up' || task.status === 'reattempt_scheduled') {
    acts.append(btn('deliver', 'primary', () => { openForm = openForm === 'deliver:' + id ? '' : 'deliver:' + id; render(); }),
      btn('fail', 'danger', () => { openForm = openForm === 'fail:' + id ? '' : 'fail:' + id; render(); }));
  } else if (task.status === 'returning') {
    acts.append(btn('returned', 'primary', () => enqueue(id, 'returned', undefined, t('courier.do.returned'), x => { x.status = 'returned'; })));
  }
  card.append(acts);
  if (openForm === 'deliver:' + id) card.append(deliverForm(task));
  if (openForm === 'fail:' + id) card.append(failForm(task));
  return card;
}

function deliverForm(task: Task): HTMLElement {
  const code = el('input', { id: 'handover-code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '12', required: true, dir: 'ltr' });
  const cash = el('input', { id: 'cash', type: 'number', inputmode: 'decimal', min: '0', step: '0.01', value: task.cod_amount_mad > 0 ? String(task.cod_amount_mad) : '0', dir: 'ltr' });
  const form = el('form', { class: 'sub-form', id: 'deliver-form' },
    el('label', { for: 'handover-code' }, t('courier.handover_code')), code,
    task.cod_amount_mad > 0 ? el('label', { for: 'cash' }, t('courier.cash_collected')) : null, task.cod_amount_mad > 0 ? cash : null,
    el('button', { type: 'submit', class: 'primary big' }, t('courier.do.confirm_delivery')));
  form.addEventListener('submit', e => {
    e.preventDefault();
    enqueue(task.order_id, 'deliver', { handover_code: code.value.trim(), cash_collected_mad: Number(cash.value) || 0 }, t('courier.do.deliver'), x => { x.status = 'delivered'; });
  });
  return form;
}

function failForm(task: Task): HTMLElement {
  const reason = el('select', { id: 'fail-reason', required: true }, ...REASONS.map(r => el('option', { value: r }, t('reason.' + r))));
  const note = el('textarea', { id: 'fail-note', maxlength: '300', rows: '2' });
  const calls = el('input', { id: 'fail-calls', type: 'number', min: '0', max: '10', value: '0', inputmode: 'numeric', dir: 'ltr' });
  const photo = el('input', { id: 'fail-photo', type: 'file', accept: 'image/*', capture: 'environment' });
  const form = el('form', { class: 'sub-form', id: 'fail-form' },
    el('label', { for: 'fail-reason' }, t('courier.fail_reason')), reason,
    el('label', { for: 'fail-note' }, t('courier.fail_note')), note,
    el('label', { for: 'fail-calls' }, t('courier.fail_calls')), calls,
    el('label', { for: 'fail-photo' }, t('courier.fail_photo')), photo,
    el('p', { class: 'hint' }, t('courier.fail_photo_hint')),
    el('button', { type: 'submit', class: 'danger big' }, t('courier.do.report_failure')));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    let ref = '';
    const f = photo.files?.[0];
    if (f) { // the photo stays on the phone; its fingerprint is the evidence reference
      const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', await f.arrayBuffer()));
      ref = 'sha256:' + Array.from(sum, b => b.toString(16).padStart(2, '0')).join('');
    }
    enqueue(task.order_id, 'fail', { reason: reason.value, note: note.value.trim(), evidence: { photo_ref: ref, call_attempts: Number(calls.value) || 0 } },
      t('courier.do.fail'), x => { x.status = 'failed_attempt'; });
  });
  return form;
}

document.addEventListener('click', e => { if ((e.target as HTMLElement).id === 'reload') void refresh(); });

void main();
