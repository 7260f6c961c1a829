// The dispatcher console: a live map (couriers, orders, routes, H3 supply
// and demand, alerts) with lists beside it and the dispatcher's actions.
// Same origin and the same JWT login as the API; a merchant sees only its
// own orders.
import * as L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import './console.css';
import { Api, ApiError } from './common/api';
import { applyTexts, el, fmtCountdown, fmtDateTime, fmtMAD, fmtNum, fmtTime, initI18n, isRTL, langSwitch, onLangChange, t } from './common/i18n';
import { openStream, StreamState } from './common/sse';
import { CouriersLayer, LiveCourier } from './common/couriers-layer';

interface Place { lat: number; lng: number; address?: string }
interface Order {
  id: string; merchant_id: string; status: string; courier_id?: string; offered_to?: string; pickup: Place; dropoff: Place;
  promise_by: string; booked_at: string; cod_amount_mad: number; parcel_size: string; customer_name?: string; customer_phone?: string;
  attempts?: Array<{ n: number; reason: string; verified: boolean; at: string; decision?: string }>; policy?: { max_attempts: number };
  flags: { needs_dispatcher: boolean; at_risk: boolean; predicted_at?: string };
}
interface Stop { order_id: string; kind: string; lat: number; lng: number; eta: string; late: boolean }
interface Config { basemap: { kind: string; url?: string; attribution?: string; max_zoom?: number; tile_type?: string }; cities: Array<{ name: string; outline: number[][][] }>; center: [number, number]; zoom: number }

const ACTIVE = ['booked', 'offered', 'assigned', 'picked_up', 'failed_attempt', 'reattempt_scheduled', 'returning'];
const api = new Api(sessionStorage, 'tawsil.console');
const couriers = new Map<string, LiveCourier>();
const orders = new Map<string, Order>();
const routes = new Map<string, Stop[]>();
let selectedOrder = '';
let selectedCourier = '';
let streamState: StreamState = 'connecting';
let isOps = false;

const root = document.getElementById('app')!;

async function main(): Promise<void> {
  await initI18n();
  onLangChange(() => render());
  render();
}

function render(): void {
  root.replaceChildren();
  if (!api.session) { root.append(loginView()); applyTexts(root); return; }
  if (api.session.role === 'courier') { location.href = '/courier/'; return; }
  if (!mapReady) void startConsole(); else { root.append(shell!); relayout(); }
}

function loginView(): HTMLElement {
  const email = el('input', { type: 'email', name: 'email', autocomplete: 'username', required: true, id: 'email' });
  const pw = el('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, id: 'password' });
  const err = el('p', { class: 'error', role: 'alert' });
  const form = el('form', { class: 'login card' },
    el('h1', { 'data-i18n': 'console.title' }),
    el('label', { for: 'email', 'data-i18n': 'login.email' }), email,
    el('label', { for: 'password', 'data-i18n': 'login.password' }), pw,
    el('button', { type: 'submit', class: 'primary', 'data-i18n': 'login.submit' }), err);
  form.addEventListener('submit', async e => {
    e.preventDefault();
    err.textContent = '';
    try { await api.login(email.value.trim(), pw.value); render(); } catch (x) { err.textContent = x instanceof ApiError ? x.message : t('error.network'); }
  });
  return el('div', { class: 'login-page' }, el('div', { class: 'login-head' }, langSwitch()), form);
}

// ---- the console shell -------------------------------------------------------------------------
let mapReady = false;
let shell: HTMLElement | null = null;
let map: L.Map;
let zoom: L.Control.Zoom;
let layersCtl: L.Control.Layers;
let courierLayer: CouriersLayer;
const orderLayer = L.layerGroup();
const routeLayer = L.layerGroup();
const densityLayer = L.layerGroup();
const alertLayer = L.layerGroup();
const outlineLayer = L.layerGroup();
const replayLayer = L.layerGroup();
let lists: HTMLElement, detail: HTMLElement, statusEl: HTMLElement, counts: HTMLElement;

async function startConsole(): Promise<void> {
  mapReady = true;
  isOps = api.session!.role === 'dispatcher' || api.session!.role === 'admin';
  const cfg: Config = await (await fetch('/ui/config')).json();
  statusEl = el('span', { class: 'stream-state', 'data-state': streamState, id: 'stream-state' });
  counts = el('span', { class: 'counts', id: 'counts' });
  const logout = el('button', { type: 'button', class: 'link', 'data-i18n': 'login.logout' });
  logout.addEventListener('click', () => { api.logout(); location.reload(); });
  const mapEl = el('div', { id: 'map', 'data-live-couriers': '0' });
  lists = el('aside', { class: 'lists', id: 'lists' });
  detail = el('section', { class: 'detail', id: 'detail' });
  shell = el('div', { class: 'console' },
    el('header', {}, el('strong', { 'data-i18n': 'console.title' }), statusEl, counts, el('span', { class: 'grow' }),
      el('span', { class: 'who' }, api.session!.email || ''), langSwitch(), logout),
    el('main', {}, lists, mapEl, detail));
  root.append(shell);
  applyTexts(shell);

  map = L.map(mapEl, { preferCanvas: true, zoomControl: false, attributionControl: true, worldCopyJump: false })
    .setView(cfg.center, cfg.zoom);
  const bases: Record<string, L.Layer> = {};
  if (cfg.basemap.kind === 'tiles' && cfg.basemap.url) {
    bases[t('map.basemap')] = L.tileLayer(cfg.basemap.url, { maxZoom: cfg.basemap.max_zoom || 19, attribution: cfg.basemap.attribution || '' }).addTo(map);
  } else if (cfg.basemap.kind === 'pmtiles' && cfg.basemap.url && cfg.basemap.tile_type !== 'mvt') {
    bases[t('map.basemap')] = L.tileLayer(cfg.basemap.url, { maxZoom: cfg.basemap.max_zoom || 16, attribution: cfg.basemap.attribution || '' }).addTo(map);
  } else {
    mapEl.classList.add('no-basemap'); // plain background: outlines and H3 cells carry the map
  }
  for (const c of cfg.cities) {
    L.polygon(c.outline.map(ring => ring.map(([lng, lat]) => [lat, lng] as [number, number])), { color: '#555', weight: 2, fill: false, dashArray: '6 4', interactive: false }).addTo(outlineLayer);
    const [lng, lat] = c.outline[0][0];
    L.marker([lat, lng], { icon: L.divIcon({ className: 'city-label', html: '' }), interactive: false }).bindTooltip(c.name, { permanent: true, direction: 'center', className: 'city-name' }).addTo(outlineLayer);
  }
  outlineLayer.addTo(map);
  courierLayer = new CouriersLayer(couriers, ids => selectCourier(ids[0]));
  (window as any).__tawsilStats = courierLayer.stats;
  if (isOps) { densityLayer.addTo(map); courierLayer.addTo(map); alertLayer.addTo(map); }
  routeLayer.addTo(map); orderLayer.addTo(map); replayLayer.addTo(map);
  relayout();
  onLangChange(relayout);
  await refreshAll();
  setInterval(() => { void refreshOrders(); }, 30000);
  if (isOps) {
    setInterval(() => { void refreshDensity(); }, 15000);
    openStream(api, onEvent, s => { streamState = s; statusEl.dataset.state = s; statusEl.textContent = t('stream.' + s); });
  }
  setInterval(() => { renderLists(); renderOrders(); }, 15000); // countdowns
}

/** relayout mirrors the map's controls for right-to-left languages. */
function relayout(): void {
  if (!map) return;
  const rtl = isRTL();
  zoom?.remove(); layersCtl?.remove();
  zoom = L.control.zoom({ position: rtl ? 'topleft' : 'topright', zoomInTitle: t('map.zoom_in'), zoomOutTitle: t('map.zoom_out') }).addTo(map);
  const overlays: Record<string, L.Layer> = { [t('map.layer.orders')]: orderLayer, [t('map.layer.routes')]: routeLayer, [t('map.layer.outline')]: outlineLayer };
  if (isOps) Object.assign(overlays, { [t('map.layer.couriers')]: courierLayer, [t('map.layer.density')]: densityLayer, [t('map.layer.alerts')]: alertLayer });
  layersCtl = L.control.layers({}, overlays, { position: rtl ? 'topleft' : 'topright', collapsed: true }).addTo(map);
  map.attributionControl.setPosition(rtl ? 'bottomleft' : 'bottomright');
  map.attributionControl.setPrefix('<a href="https://leafletjs.com" lang="en">Leaflet</a>');
  renderLists(); renderOrders(); renderDetail();
}

// ---- data ----------------------------------------------------------------------------------------
async function refreshAll(): Promise<void> {
  const jobs: Promise<unknown>[] = [refreshOrders()];
  if (isOps) jobs.push(refreshCouriers(), refreshDensity(), refreshAtRisk(), refreshCash());
  await Promise.allSettled(jobs);
  renderLists(); renderOrders();
}

async function refreshCouriers(): Promise<void> {
  let after = '';
  for (let page = 0; page < 100; page++) {
    const r = await api.call<{ couriers: any[]; next: string }>('GET', `/v1/couriers?limit=500${after ? '&after=' + encodeURIComponent(after) : ''}`);
    for (const c of r.couriers) {
      if (c.lat === undefined) continue;
      couriers.set(c.id, { id: c.id, name: c.name, lat: c.lat, lng: c.lng, status: c.status, load: c.load, capacity: c.capacity, online: c.online, battery: c.battery, updated: Date.parse(c.updated_at) });
    }
    if (!r.next) break;
    after = r.next;
  }
  couriersChanged();
}

async function refreshOrders(): Promise<void> {
  const seen = new Set<string>();
  let after = '';
  for (let page = 0; page < 10; page++) {
    const r = await api.call<{ orders: Order[]; next: string }>('GET', `/v1/orders?status=${ACTIVE.join(',')}&limit=200${after ? '&after=' + after : ''}`);
    for (const o of r.orders) { orders.set(o.id, o); seen.add(o.id); }
    if (!r.next) break;
    after = r.next;
  }
  for (const id of [...orders.keys()]) if (!seen.has(id) && id !== selectedOrder) orders.delete(id);
  renderLists(); renderOrders();
}

async function refreshOrder(id: string): Promise<void> {
  try {
    const o = await api.call<Order>('GET', `/v1/orders/${id}`);
    if (ACTIVE.includes(o.status) || id === selectedOrder) orders.set(id, o); else orders.delete(id);
  } catch (e) { if (e instanceof ApiError && e.status === 404) orders.delete(id); }
  renderLists(); renderOrders();
  if (id === selectedOrder) renderDetail();
}

async function refreshAtRisk(): Promise<void> {
  const r = await api.call<{ orders: Array<{ order_id: string }> }>('GET', '/v1/dispatch/at-risk');
  const risky = new Set(r.orders.map(o => o.order_id));
  for (const o of orders.values()) o.flags.at_risk = risky.has(o.id);
}

async function refreshDensity(): Promise<void> {
  const [fc, al] = await Promise.all([
    api.call<{ features: any[] }>('GET', '/v1/density?res=8'),
    api.call<{ alerts: any[] }>('GET', '/v1/density/alerts?res=8'),
  ]);
  densityLayer.clearLayers();
  L.geoJSON(fc as any, {
    interactive: true,
    style: f => {
      const p = f!.properties || {};
      const supply = p.available_couriers || 0, demand = (p.open_orders || 0) + (p.booked_15m || 0);
      const color = demand > supply ? '#d7301f' : supply > 0 ? '#1a9850' : '#999';
      return { color, weight: 1, fillColor: color, fillOpacity: Math.min(0.45, 0.08 + 0.05 * (supply + demand)) };
    },
    onEachFeature: (f, layer) => {
      const p = f.properties || {};
      layer.bindTooltip(() => t('density.tip', { supply: fmtNum(p.available_couriers || 0), demand: fmtNum((p.open_orders || 0) + (p.booked_15m || 0)) }));
    },
  }).addTo(densityLayer);
  alertLayer.clearLayers();
  for (const a of al.alerts) {
    L.circle([a.lat, a.lng], { radius: 700, color: '#e66101', weight: 3, fill: false, dashArray: '4 4' })
      .bindTooltip(() => a.no_supply ? t('alert.no_supply', { demand: fmtNum(a.demand) }) : t('alert.ratio', { demand: fmtNum(a.demand), supply: fmtNum(a.available_couriers) }))
      .addTo(alertLayer);
  }
  alerts = al.alerts;
  renderLists();
}
let alerts: any[] = [];
// Cash on delivery: who holds how much, and who is over the cap (no COD offers until a hand-in).
const cash = new Map<string, { in_hand_mad: number; cap_mad: number | null; over_cap: boolean }>();

async function refreshCash(): Promise<void> {
  const r = await api.call<{ balances: Array<{ courier_id: string; in_hand_mad: number; cap_mad: number | null; over_cap: boolean }> }>('GET', '/v1/cash/balances');
  cash.clear();
  for (const b of r.balances) cash.set(b.courier_id, b);
}

function onEvent(e: { type: string; data: any }): void {
  if (e.type === 'couriers.updated') {
    const now = Date.now();
    for (const [id, lat, lng, status, load, online, capacity] of e.data.couriers as any[][]) {
      const c = couriers.get(id);
      if (c) Object.assign(c, { lat, lng, status, load, online, capacity, updated: now });
      else { couriers.set(id, { id, lat, lng, status, load, online, capacity, updated: now }); void nameOf(id); }
    }
    const sent = Date.parse(e.data.at);
    if (!Number.isNaN(sent)) {
      (window as any).__tawsilLatency = now - sent;
      if (!courierLayer.pendingSince) courierLayer.pendingSince = sent;
    }
    couriersChanged();
    return;
  }
  if (e.type === 'route.planned') {
    routes.set(e.data.courier_id, e.data.stops || []);
    renderOrders();
    return;
  }
  if (e.type === 'courier.cash_over_cap') {
    cash.set(e.data.courier_id, { in_hand_mad: e.data.in_hand_mad, cap_mad: e.data.cap_mad, over_cap: true });
    renderLists();
    return;
  }
  if (e.type === 'order.at_risk') { const o = orders.get(e.data.order_id); if (o) o.flags.at_risk = true; }
  if (e.type.startsWith('order.') && e.data.order_id) void refreshOrder(e.data.order_id);
}

const naming = new Set<string>();
async function nameOf(id: string): Promise<void> {
  if (naming.has(id)) return;
  naming.add(id);
  try { const c = await api.call<any>('GET', `/v1/couriers/${id}`); const lc = couriers.get(id); if (lc) lc.name = c.name; } catch { /* a name is a nicety */ }
}

let listTimer = 0;
function couriersChanged(): void {
  courierLayer?.redraw();
  document.getElementById('map')!.dataset.liveCouriers = String([...couriers.values()].filter(c => c.online).length);
  if (!listTimer) listTimer = window.setTimeout(() => { listTimer = 0; renderLists(); if (selectedCourier) renderDetail(); }, 1000);
}

// ---- lists ---------------------------------------------------------------------------------------
function orderRow(o: Order): HTMLElement {
  const b = el('button', { type: 'button', class: 'row' + (o.id === selectedOrder ? ' selected' : ''), 'data-order': o.id },
    el('span', { class: 'badge s-' + o.status }, t('status.' + o.status)),
    el('bdi', { class: 'id' }, o.id.slice(-6)),
    el('span', { class: 'addr' }, o.dropoff.address || `${o.dropoff.lat.toFixed(3)}, ${o.dropoff.lng.toFixed(3)}`),
    el('span', { class: 'countdown' + (o.flags.at_risk ? ' risk' : '') }, fmtCountdown(o.promise_by)));
  b.addEventListener('click', () => selectOrder(o.id));
  return b;
}

function section(id: string, titleKey: string, rows: HTMLElement[], total = rows.length): HTMLElement {
  return el('details', { open: true, id, 'data-count': String(total) },
    el('summary', {}, t(titleKey), ' ', el('span', { class: 'n' }, fmtNum(total))),
    ...(rows.length ? rows : [el('p', { class: 'empty' }, t('list.empty'))]));
}

function renderLists(): void {
  if (!lists) return;
  const all = [...orders.values()].sort((a, b) => a.promise_by.localeCompare(b.promise_by));
  const needs = all.filter(o => o.flags.needs_dispatcher || o.status === 'failed_attempt');
  const risky = all.filter(o => o.flags.at_risk);
  const unassigned = all.filter(o => o.status === 'booked' || o.status === 'offered');
  const open: Record<string, boolean> = {};
  lists.querySelectorAll('details').forEach(d => { open[d.id] = d.open; });
  const parts = [section('list-needs', 'list.needs_dispatcher', needs.map(orderRow)), section('list-risk', 'list.at_risk', risky.map(orderRow)),
    section('list-unassigned', 'list.unassigned', unassigned.map(orderRow))];
  if (!isOps) parts.push(section('list-active', 'list.active', all.map(orderRow)));
  else parts.push(section('list-progress', 'list.in_progress', all.filter(o => !['booked', 'offered'].includes(o.status)).map(orderRow)));
  if (isOps) {
    const on = [...couriers.values()].filter(c => c.online && c.status !== 'offline').sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
    const shown = on.slice(0, 200); // a long list shows its first 200; the map shows everyone
    const rows = shown.map(c => {
      const b = el('button', { type: 'button', class: 'row' + (c.id === selectedCourier ? ' selected' : ''), 'data-courier': c.id },
        el('span', { class: 'badge c-' + c.status }, t('courier.status.' + c.status)),
        el('span', { class: 'name' }, c.name || c.id.slice(-6)),
        el('span', { class: 'load' }, t('courier.load', { load: fmtNum(c.load), capacity: fmtNum(c.capacity) })));
      b.addEventListener('click', () => selectCourier(c.id));
      return b;
    });
    if (on.length > shown.length) rows.push(el('p', { class: 'more' }, t('list.more', { n: fmtNum(on.length - shown.length) })));
    parts.push(section('list-couriers', 'list.couriers_on_shift', rows, on.length));
    const holding = [...cash.entries()].filter(([, b]) => b.in_hand_mad > 0).sort((a, b) => Number(b[1].over_cap) - Number(a[1].over_cap) || b[1].in_hand_mad - a[1].in_hand_mad);
    if (holding.length) parts.push(section('list-cash', 'list.cash', holding.slice(0, 200).map(([id, b]) => {
      const row = el('button', { type: 'button', class: 'row' + (id === selectedCourier ? ' selected' : ''), 'data-courier': id },
        b.over_cap ? el('span', { class: 'badge alert', title: t('cash.over_cap') }, '!') : null,
        el('span', { class: 'name' }, couriers.get(id)?.name || id.slice(-6)),
        el('span', { class: 'load' }, b.cap_mad ? t('cash.of_cap', { amount: fmtMAD(b.in_hand_mad), cap: fmtMAD(b.cap_mad) }) : fmtMAD(b.in_hand_mad)));
      row.addEventListener('click', () => selectCourier(id));
      return row;
    }), holding.length));
    if (alerts.length) parts.push(section('list-alerts', 'list.alerts', alerts.map(a => {
      const b = el('button', { type: 'button', class: 'row' }, el('span', { class: 'badge alert' }, '!'),
        el('span', {}, a.no_supply ? t('alert.no_supply', { demand: fmtNum(a.demand) }) : t('alert.ratio', { demand: fmtNum(a.demand), supply: fmtNum(a.available_couriers) })));
      b.addEventListener('click', () => map.setView([a.lat, a.lng], 14));
      return b;
    })));
  }
  lists.replaceChildren(...parts);
  lists.querySelectorAll('details').forEach(d => { if (d.id in open) d.open = open[d.id]; });
  counts.textContent = t('console.counts', { couriers: fmtNum([...couriers.values()].filter(c => c.online).length), orders: fmtNum(orders.size) });
}

// ---- map layers for orders and routes -----------------------------------------------------------
function renderOrders(): void {
  if (!map) return;
  orderLayer.clearLayers(); routeLayer.clearLayers();
  for (const o of orders.values()) {
    const color = o.flags.at_risk ? '#d7191c' : o.status === 'picked_up' ? '#2c7bb6' : o.status === 'failed_attempt' ? '#e66101' : '#7b3294';
    const m = L.circleMarker([o.dropoff.lat, o.dropoff.lng], { radius: o.id === selectedOrder ? 9 : 6, color: '#fff', weight: 2, fillColor: color, fillOpacity: 0.95 });
    m.bindTooltip(() => `${t('status.' + o.status)} · ${fmtCountdown(o.promise_by)}${o.flags.at_risk ? ' · ' + t('order.at_risk') : ''}`);
    m.on('click', () => selectOrder(o.id));
    m.addTo(orderLayer);
    if (o.id === selectedOrder) {
      L.polyline([[o.pickup.lat, o.pickup.lng], [o.dropoff.lat, o.dropoff.lng]], { color: '#7b3294', weight: 2, dashArray: '2 6' }).addTo(routeLayer);
      L.circleMarker([o.pickup.lat, o.pickup.lng], { radius: 6, color: '#7b3294', weight: 2, fillColor: '#fff', fillOpacity: 1 }).bindTooltip(t('order.pickup')).addTo(routeLayer);
    }
  }
  for (const [cid, stops] of routes) {
    const c = couriers.get(cid);
    if (!c || !stops.length) continue;
    const pts: [number, number][] = [[c.lat, c.lng], ...stops.map(s => [s.lat, s.lng] as [number, number])];
    L.polyline(pts, { color: cid === selectedCourier ? '#111' : '#2c7bb6', weight: cid === selectedCourier ? 4 : 2, opacity: 0.7 }).addTo(routeLayer);
  }
}

// ---- detail panel and actions -------------------------------------------------------------------
function selectOrder(id: string): void {
  selectedOrder = id; selectedCourier = '';
  dropFinished();
  courierLayer && (courierLayer.selected = '');
  const o = orders.get(id);
  if (o) map.panTo([o.dropoff.lat, o.dropoff.lng]);
  renderLists(); renderOrders(); renderDetail();
}

function dropFinished(): void {
  for (const [id, o] of orders) if (!ACTIVE.includes(o.status) && id !== selectedOrder) orders.delete(id);
}

function selectCourier(id: string): void {
  selectedCourier = id; selectedOrder = '';
  dropFinished();
  courierLayer.selected = id; courierLayer.redraw();
  void nameOf(id);
  renderLists(); renderOrders(); renderDetail();
}

function field(label: string, value: Node | string): HTMLElement {
  return el('div', { class: 'field' }, el('span', { class: 'label' }, label), el('span', { class: 'value' }, value));
}

function actionButton(key: string, fn: () => Promise<unknown>, cls = ''): HTMLButtonElement {
  const b = el('button', { type: 'button', class: cls, 'data-action': key }, t('action.' + key));
  b.addEventListener('click', async () => {
    b.disabled = true;
    try { await fn(); } catch (e) { showError(e); } finally { b.disabled = false; }
  });
  return b;
}

function showError(e: unknown): void {
  const msg = e instanceof ApiError ? `${e.problem.title}: ${e.problem.detail || ''}` : t('error.network');
  const p = el('p', { class: 'error', role: 'alert', id: 'action-error' }, msg);
  detail.querySelector('#action-error')?.remove();
  detail.prepend(p);
}

function renderDetail(): void {
  if (!detail) return;
  // Live updates re-render the open detail every second: what the
  // dispatcher typed, and the replay shown, stay.
  const target = selectedOrder ? 'o:' + selectedOrder : selectedCourier ? 'c:' + selectedCourier : '';
  const typed = new Map<string, string>();
  if (detail.dataset.for === target) detail.querySelectorAll<HTMLInputElement | HTMLSelectElement>('input[id], select[id]').forEach(i => typed.set(i.id, i.value));
  else replayShown = null;
  detail.replaceChildren();
  detail.dataset.for = target;
  if (selectedOrder) { const o = orders.get(selectedOrder); if (o) orderDetail(o); }
  else if (selectedCourier) { const c = couriers.get(selectedCourier); if (c) courierDetail(c); }
  else detail.append(el('p', { class: 'hint' }, t('detail.hint')));
  for (const [id, v] of typed) {
    const i = detail.querySelector<HTMLInputElement | HTMLSelectElement>('#' + id);
    if (i && (!(i instanceof HTMLSelectElement) || [...i.options].some(op => op.value === v))) i.value = v;
  }
  showReplay();
}

// replayShown is what the replay line says (it outlives re-renders of the detail).
let replayShown: { text: string; points: number } | null = null;

function showReplay(): void {
  const info = document.getElementById('replay-info');
  if (!info || !replayShown) return;
  info.textContent = replayShown.text;
  info.dataset.points = String(replayShown.points);
}

function append(parent: HTMLElement, ...nodes: Array<Node | null>): void {
  for (const n of nodes) if (n) parent.append(n);
}

function orderDetail(o: Order): void {
  const c = o.courier_id ? couriers.get(o.courier_id) : undefined;
  append(detail,
    el('h2', {}, t('order.title'), ' ', el('bdi', {}, o.id.slice(-6))),
    field(t('order.status'), el('span', { class: 'badge s-' + o.status, id: 'order-status', 'data-status': o.status }, t('status.' + o.status))),
    field(t('order.promise'), `${fmtTime(o.promise_by)} (${fmtCountdown(o.promise_by)})`),
    o.flags.at_risk ? field(t('order.at_risk'), o.flags.predicted_at ? t('order.predicted', { time: fmtTime(o.flags.predicted_at) }) : '✓') : null,
    field(t('order.pickup'), o.pickup.address || '—'),
    field(t('order.dropoff'), o.dropoff.address || '—'),
    field(t('order.parcel'), o.parcel_size),
    o.cod_amount_mad > 0 ? field(t('order.cod'), fmtMAD(o.cod_amount_mad)) : null,
    field(t('order.courier'), c ? (c.name || c.id) : o.courier_id || (o.offered_to ? t('order.offered_to', { id: couriers.get(o.offered_to)?.name || o.offered_to.slice(-6) }) : '—')),
    ...(o.attempts || []).map(a => field(t('order.attempt', { n: fmtNum(a.n) }), `${t('reason.' + a.reason)} · ${fmtTime(a.at)}${a.decision ? ' → ' + t('decision.' + a.decision) : ''}`)),
  );
  if (!isOps) {
    if (['booked', 'offered', 'assigned'].includes(o.status)) detail.append(el('div', { class: 'actions' }, cancelButton(o)));
    return;
  }
  const actions = el('div', { class: 'actions' });
  if (['booked', 'offered', 'assigned', 'reattempt_scheduled'].includes(o.status) || o.flags.needs_dispatcher) actions.append(assignForm(o));
  if (o.status === 'assigned') actions.append(actionButton('unassign', async () => { await api.call('POST', `/v1/orders/${o.id}/unassign`, { reason: 'dispatcher' }); await refreshOrder(o.id); }));
  if (o.status === 'failed_attempt') actions.append(resolveForm(o));
  if (['booked', 'offered', 'assigned', 'failed_attempt', 'reattempt_scheduled'].includes(o.status)) actions.append(cancelButton(o));
  detail.append(actions);
}

function cancelButton(o: Order): HTMLButtonElement {
  return actionButton('cancel', async () => {
    const reason = prompt(t('action.cancel_reason')) ?? '';
    if (reason === null) return;
    await api.call('POST', `/v1/orders/${o.id}/cancel`, { reason });
    await refreshOrder(o.id);
  }, 'danger');
}

function assignForm(o: Order): HTMLElement {
  const sel = el('select', { id: 'assign-courier', 'aria-label': t('action.assign_to') });
  const fill = (near: any[]): void => {
    const keep = sel.value; // the nearest list arrives later: a choice made meanwhile stays
    sel.replaceChildren(el('option', { value: '' }, t('action.choose_courier')));
    const seen = new Set<string>();
    for (const c of near) {
      seen.add(c.id);
      sel.append(el('option', { value: c.id }, `${c.name || c.id.slice(-6)} · ${fmtNum((c.distance_m || 0) / 1000, 1)} km · ${t('courier.status.' + c.status)}`));
    }
    for (const c of couriers.values()) {
      if (seen.has(c.id) || !c.online || c.status === 'offline') continue;
      sel.append(el('option', { value: c.id }, `${c.name || c.id.slice(-6)} · ${t('courier.status.' + c.status)}`));
    }
    if (keep && [...sel.options].some(op => op.value === keep)) sel.value = keep;
  };
  fill([]);
  void api.call<{ couriers: any[] }>('GET', `/v1/couriers?near=${o.pickup.lat},${o.pickup.lng}&limit=8&radius_m=20000`).then(r => fill(r.couriers)).catch(() => undefined);
  const btn = actionButton('assign', async () => {
    if (!sel.value) return;
    await api.call('POST', `/v1/orders/${o.id}/assign`, { courier_id: sel.value });
    await refreshOrder(o.id);
  }, 'primary');
  return el('div', { class: 'assign' }, el('label', { for: 'assign-courier' }, t('action.assign_to')), sel, btn);
}

function resolveForm(o: Order): HTMLElement {
  const box = el('div', { class: 'resolve', id: 'resolve' }, el('h3', {}, t('resolve.title')));
  const last = o.attempts?.[o.attempts.length - 1];
  if (last) {
    const minutes = (Date.parse(o.promise_by) - Date.now()) / 60000;
    void api.call<any>('POST', '/v1/rules/dry-run', { reason: last.reason, attempt: last.n, minutes_left: Math.round(minutes), cod: o.cod_amount_mad > 0,
      parcel_size: o.parcel_size, verified: last.verified })
      .then(d => {
        box.append(el('div', { class: 'dry-run', id: 'dry-run' }, el('strong', {}, t('resolve.rules_say'), ' ', t('decision.' + d.action)),
          el('p', {}, t('resolve.rule', { rule: d.rule })), d.explain ? el('p', { class: 'explain', lang: 'en' }, String(d.explain)) : null));
      }).catch(showError);
  }
  const acts = el('div', { class: 'resolve-actions' });
  for (const a of ['retry_later', 'reassign', 'relay_point', 'return_to_merchant', 'cancel']) {
    const b = el('button', { type: 'button', 'data-resolve': a }, t('decision.' + a));
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await api.call('POST', `/v1/orders/${o.id}/resolve`, { action: a }); await refreshOrder(o.id); } catch (e) { showError(e); } finally { b.disabled = false; }
    });
    acts.append(b);
  }
  box.append(acts);
  return box;
}

function courierDetail(c: LiveCourier): void {
  const mine = [...orders.values()].filter(o => o.courier_id === c.id);
  const toLocal = (d: Date): string => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const from = el('input', { type: 'datetime-local', id: 'replay-from', value: toLocal(new Date(Date.now() - 3600_000)) });
  const to = el('input', { type: 'datetime-local', id: 'replay-to', value: toLocal(new Date(Date.now() + 60_000)) }); // minutes: round up so the last seconds count
  const info = el('p', { class: 'replay-info', id: 'replay-info' });
  append(detail,
    el('h2', {}, c.name || t('courier.title'), ' ', el('bdi', { class: 'id' }, c.id.slice(-6))),
    field(t('courier.status'), el('span', { class: 'badge c-' + c.status }, t('courier.status.' + c.status))),
    field(t('courier.online'), c.online ? t('yes') : t('no')),
    field(t('courier.load_label'), t('courier.load', { load: fmtNum(c.load), capacity: fmtNum(c.capacity) })),
    c.battery !== undefined ? field(t('courier.battery'), fmtNum(c.battery) + ' %') : null,
    c.updated ? field(t('courier.updated'), fmtTime(c.updated)) : null,
    field(t('courier.orders'), mine.length ? mine.map(o => o.id.slice(-6)).join(', ') : '—'),
    cashFields(c.id),
    el('h3', {}, t('replay.title')),
    el('div', { class: 'replay' }, el('label', { for: 'replay-from' }, t('replay.from')), from, el('label', { for: 'replay-to' }, t('replay.to')), to,
      actionButton('replay', () => replay(c.id, new Date(from.value), new Date(to.value))), info),
  );
}

// cashFields shows the courier's cash in hand and takes a hand-in.
function cashFields(id: string): HTMLElement {
  const b = cash.get(id);
  const box = el('div', { class: 'cash', id: 'courier-cash' },
    field(t('cash.in_hand'), b ? (b.cap_mad ? t('cash.of_cap', { amount: fmtMAD(b.in_hand_mad), cap: fmtMAD(b.cap_mad) }) : fmtMAD(b.in_hand_mad)) : fmtMAD(0)),
    b?.over_cap ? el('p', { class: 'error' }, t('cash.over_cap')) : null);
  const amount = el('input', { type: 'number', min: '0.01', step: '0.01', id: 'handin-amount', 'aria-label': t('cash.amount') });
  const hub = el('input', { type: 'text', maxlength: '100', id: 'handin-hub', placeholder: t('cash.hub') });
  box.append(el('div', { class: 'handin' }, amount, hub, actionButton('hand_in', async () => {
    const v = Number(amount.value);
    if (!(v > 0)) throw new Error('amount');
    await api.call('POST', `/v1/couriers/${id}/cash/hand-ins`, { amount_mad: Math.round(v * 100) / 100, hub: hub.value.trim() },
      { 'Idempotency-Key': 'handin-' + id + '-' + Date.now() });
    await refreshCash();
    renderLists(); renderDetail();
  })));
  return box;
}

let replayTimer = 0;
async function replay(id: string, from: Date, to: Date): Promise<void> {
  clearInterval(replayTimer);
  replayLayer.clearLayers();
  const r = await api.call<{ positions: Array<{ lat: number; lng: number; t: string }> }>('GET',
    `/v1/couriers/${id}/track?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
  const ps = r.positions;
  replayShown = { text: t('replay.points', { n: fmtNum(ps.length) }), points: ps.length };
  showReplay();
  if (!ps.length) return;
  const line = L.polyline(ps.map(p => [p.lat, p.lng] as [number, number]), { color: '#111', weight: 3, opacity: 0.6 }).addTo(replayLayer);
  map.fitBounds(line.getBounds(), { maxZoom: 16 });
  const dot = L.circleMarker([ps[0].lat, ps[0].lng], { radius: 8, color: '#111', fillColor: '#ffd700', fillOpacity: 1 }).addTo(replayLayer);
  let i = 0;
  const step = Math.max(1, Math.floor(ps.length / 300)); // about 30 s whatever the length
  replayTimer = window.setInterval(() => {
    i = Math.min(ps.length - 1, i + step);
    dot.setLatLng([ps[i].lat, ps[i].lng]);
    replayShown = { text: t('replay.at', { time: fmtDateTime(ps[i].t), n: fmtNum(ps.length) }), points: ps.length };
    showReplay();
    if (i >= ps.length - 1) clearInterval(replayTimer);
  }, 100);
}

void main();
