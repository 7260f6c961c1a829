// The customer's tracking page (/t/{token}): status timeline, ETA and a
// coarse courier position while out for delivery; nothing personal (the
// public JSON holds none). Small on purpose: no map library, one request
// every 20 s.
import './track.css';
import { applyTexts, el, fmtCountdown, fmtTime, initI18n, langSwitch, onLangChange, t } from './common/i18n';

interface Point { lat: number; lng: number }
interface Track {
  status: string; booked_at: string; assigned_at?: string; picked_up_at?: string; promise_by: string; eta?: string;
  courier_position?: Point; delivered_at?: string;
  pin?: { status: string; confirm_by: string; near?: Point };
}

const token = location.pathname.split('/').filter(Boolean).pop() || '';
const root = document.getElementById('app')!;
let data: Track | null = null;
let failed = '';
let outline: number[][] | null = null;
// Informal addresses: the point the customer is about to confirm, and how it went.
let pinAt: Point | null = null;
let pinMsg = '';
let pinBusy = false;

async function poll(): Promise<void> {
  try {
    const res = await fetch(`/v1/track/${encodeURIComponent(token)}`, { headers: { 'Accept-Language': document.documentElement.lang } });
    if (res.status === 404) { failed = 'track.not_found'; data = null; } else if (res.ok) { data = await res.json(); failed = ''; } else failed = 'track.unavailable';
  } catch { failed = 'track.unavailable'; }
  render();
}

const STEPS: Array<[string, keyof Track | null]> = [['booked', 'booked_at'], ['assigned', 'assigned_at'], ['picked_up', 'picked_up_at'], ['delivered', 'delivered_at']];
const RANK: Record<string, number> = { booked: 0, offered: 0, assigned: 1, picked_up: 2, failed_attempt: 2, reattempt_scheduled: 2, delivered: 3, returning: 2, returned: 3, cancelled: 3 };

function render(): void {
  const body: Array<Node | null> = [];
  if (failed) body.push(el('p', { class: 'card notice', id: 'track-error' }, t(failed)));
  if (data) {
    const d = data;
    const rank = RANK[d.status] ?? 0;
    const ended = d.status === 'cancelled' || d.status === 'returned' || d.status === 'returning';
    body.push(el('section', { class: 'card status', id: 'track-status', 'data-status': d.status },
      el('h1', {}, t('track.status.' + d.status)),
      d.status === 'delivered' && d.delivered_at ? el('p', { class: 'big' }, t('track.delivered_at', { time: fmtTime(d.delivered_at) }))
        : !ended ? el('p', { class: 'big', id: 'track-eta' }, d.eta ? t('track.eta', { time: fmtTime(d.eta), in: fmtCountdown(d.eta) }) : t('track.promise', { time: fmtTime(d.promise_by) })) : null,
      d.status === 'failed_attempt' || d.status === 'reattempt_scheduled' ? el('p', {}, t('track.reattempt')) : null));
    const ol = el('ol', { class: 'timeline', id: 'timeline' });
    STEPS.forEach(([step, field], i) => {
      const at = field ? d[field] as string | undefined : undefined;
      const state = ended && i > rank ? 'skipped' : i < rank || (i === rank && step === 'delivered') ? 'done' : i === rank ? 'current' : 'todo';
      ol.append(el('li', { class: state, 'data-step': step }, el('span', { class: 'dot' }), el('span', { class: 'what' }, t('track.step.' + step)),
        at ? el('span', { class: 'when' }, fmtTime(at)) : null));
    });
    if (d.pin?.status === 'unconfirmed' && d.status === 'booked') body.push(pinCard(d));
    else if (d.pin?.status === 'confirmed' && (d.status === 'booked' || d.status === 'offered')) body.push(el('p', { class: 'card', id: 'pin-done' }, t('track.pin.confirmed')));
    body.push(el('section', { class: 'card' }, ol));
    if (d.courier_position) body.push(el('section', { class: 'card' }, el('h2', {}, t('track.courier_near')), miniMap(d.courier_position),
      el('p', { class: 'hint' }, t('track.coarse'))));
  } else if (!failed) body.push(el('p', { class: 'card' }, t('track.loading')));
  body.push(el('p', { class: 'privacy' }, t('track.privacy')));
  root.replaceChildren(el('header', { class: 'bar' }, el('strong', {}, t('app.name')), el('span', { class: 'grow' }), langSwitch()), ...body);
  applyTexts(root);
}

/**
 * pinCard asks for the drop-off point of an informal address: the phone's
 * location, or a tap on the map; then the customer confirms it.
 */
function pinCard(d: Track): HTMLElement {
  const p = pinAt || d.pin!.near!;
  const map = miniMap(p, 'pin');
  map.setAttribute('id', 'pin-map');
  map.addEventListener('click', ev => {
    const r = map.getBoundingClientRect();
    const inv = (map as unknown as { invert?: (x: number, y: number) => Point }).invert;
    if (!inv || !r.width) return;
    pinAt = inv((ev.clientX - r.left) * 300 / r.width, (ev.clientY - r.top) * 200 / r.height);
    pinMsg = '';
    render();
  });
  const locate = el('button', { type: 'button', id: 'pin-locate', class: 'secondary' }, t('track.pin.use_location'));
  locate.addEventListener('click', () => {
    if (!navigator.geolocation) { pinMsg = 'track.pin.no_location'; render(); return; }
    pinMsg = 'track.pin.locating';
    render();
    navigator.geolocation.getCurrentPosition(pos => {
      pinAt = { lat: pos.coords.latitude, lng: pos.coords.longitude };
      pinMsg = '';
      render();
    }, () => { pinMsg = 'track.pin.no_location'; render(); }, { enableHighAccuracy: true, timeout: 15000 });
  });
  const confirm = el('button', { type: 'button', id: 'pin-confirm', disabled: pinBusy || !pinAt }, t('track.pin.confirm'));
  confirm.addEventListener('click', () => void sendPin());
  return el('section', { class: 'card pin', id: 'pin-card' },
    el('h2', {}, t('track.pin.title')),
    el('p', {}, t('track.pin.hint', { time: fmtTime(d.pin!.confirm_by) })),
    map,
    el('p', { class: 'hint' }, pinAt ? t('track.pin.chosen') : t('track.pin.choose')),
    el('div', { class: 'pin-actions' }, locate, confirm),
    pinMsg ? el('p', { class: pinMsg === 'track.pin.locating' ? 'hint' : 'notice', id: 'pin-message' }, t(pinMsg)) : null);
}

async function sendPin(): Promise<void> {
  if (!pinAt || pinBusy) return;
  pinBusy = true;
  render();
  try {
    const res = await fetch(`/v1/track/${encodeURIComponent(token)}/pin`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'Accept-Language': document.documentElement.lang },
      body: JSON.stringify({ lat: pinAt.lat, lng: pinAt.lng }),
    });
    if (res.ok) { data = await res.json(); pinMsg = ''; } else if (res.status === 422) pinMsg = 'track.pin.outside';
    else if (res.status === 409) { pinMsg = ''; await poll(); } else pinMsg = 'track.unavailable';
  } catch { pinMsg = 'track.unavailable'; }
  pinBusy = false;
  render();
}

/**
 * miniMap draws the city outline and a coarse point (the courier's, ~100 m;
 * or the customer's pin) in SVG. The element carries invert(x, y) to turn a
 * tap back into a point.
 */
function miniMap(p: Point, kind: 'courier' | 'pin' = 'courier'): SVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 300 200');
  svg.setAttribute('class', 'mini-map');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t('track.courier_near'));
  const ring = outline && outline.length ? outline : [[p.lng - 0.02, p.lat - 0.02], [p.lng + 0.02, p.lat + 0.02]];
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of [...ring, [p.lng, p.lat]]) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const k = Math.min(280 / (x1 - x0 || 1), 180 / ((y1 - y0) * 1.2 || 1));
  const px = (x: number, y: number): string => `${(10 + (x - x0) * k).toFixed(1)},${(190 - (y - y0) * 1.2 * k).toFixed(1)}`;
  if (outline) {
    const poly = document.createElementNS(NS, 'polygon');
    poly.setAttribute('points', outline.map(([x, y]) => px(x, y)).join(' '));
    poly.setAttribute('class', 'city');
    svg.append(poly);
  }
  const [cx, cy] = px(p.lng, p.lat).split(',');
  const c = document.createElementNS(NS, 'circle');
  c.setAttribute('cx', cx); c.setAttribute('cy', cy); c.setAttribute('r', '7'); c.setAttribute('class', kind);
  svg.append(c);
  (svg as unknown as { invert: (x: number, y: number) => Point }).invert = (x, y) =>
    ({ lng: x0 + (x - 10) / k, lat: y0 + (190 - y) / (1.2 * k) });
  return svg;
}

async function main(): Promise<void> {
  await initI18n();
  onLangChange(render);
  render();
  await poll();
  const where = data?.courier_position || data?.pin?.near;
  if (where) {
    try {
      const cfg = await (await fetch('/ui/config')).json();
      const p = where;
      for (const city of cfg.cities) {
        const r: number[][] = city.outline[0];
        const xs = r.map(v => v[0]), ys = r.map(v => v[1]);
        if (p.lng >= Math.min(...xs) && p.lng <= Math.max(...xs) && p.lat >= Math.min(...ys) && p.lat <= Math.max(...ys)) outline = r;
      }
      render();
    } catch { /* the dot alone will do */ }
  }
  setInterval(() => { if (!document.hidden) void poll(); }, 20000);
}

void main();
