// The browser scenario (run by browser_test.go against a live backend):
// a dispatcher logs in and sees the live couriers; an order booked through
// the API appears and is assigned from the console; the courier app takes
// it through pickup (offline, then replayed) and delivery with the handover
// code; the tracking page shows no personal data; Arabic sets dir="rtl"
// with translated texts; a problem document comes back in French.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.BASE_URL, CONTROL = process.env.CONTROL_URL, ART = process.env.ARTIFACTS || 'test-artifacts';
const PW = process.env.DEMO_PASSWORD || 'tawsil-demo-2026', FIRST = process.env.FIRST_COURIER;
mkdirSync(ART, { recursive: true });

let step = '';
const T0 = Date.now();
function ok(cond, msg) { if (!cond) throw new Error(`${step}: ${msg}`); }
function log(msg) { console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}`); }
async function api(method, path, token, body, headers = {}) {
  const res = await fetch(BASE + path, { method, headers: { ...(token ? { Authorization: 'Bearer ' + token } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}
async function login(email) {
  const r = await api('POST', '/v1/auth/login', null, { email, password: PW });
  ok(r.status === 200, `login ${email}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}
async function move(courier_id, lat, lng) {
  const r = await fetch(CONTROL + '/move', { method: 'POST', body: JSON.stringify({ courier_id, lat, lng }) });
  ok(r.status === 204, 'move ' + r.status);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) { last = await fn(); if (last) return last; await sleep(250); }
  throw new Error(`${step}: timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Playwright starts every launch with a fresh temporary profile (its own --user-data-dir).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
function watch(page, name) {
  page.on('pageerror', e => errors.push(`${name}: ${e.message}`));
  page.on('console', m => { if (m.type() === 'error' && !/Failed to load resource|ERR_INTERNET_DISCONNECTED/.test(m.text())) errors.push(`${name} console: ${m.text()}`); });
}

try {
  step = 'problem in French';
  {
    const r = await api('GET', '/v1/orders', null, null, { 'Accept-Language': 'fr-MA,fr;q=0.9,en;q=0.5' });
    ok(r.status === 401 && r.headers.get('content-type').startsWith('application/problem+json'), `want a 401 problem, got ${r.status}`);
    ok(r.body.title === 'Authentification requise', `title ${r.body.title}`);
    ok(r.body.detail === "un jeton d'accès (Bearer) est requis", `detail ${r.body.detail}`);
    ok(r.headers.get('content-language') === 'fr', 'content-language ' + r.headers.get('content-language'));
    const en = await api('GET', '/v1/orders', null, null, { 'Accept-Language': 'en' });
    ok(en.body.title === 'Unauthorized' && en.body.detail === 'a bearer token is required', 'english problem ' + JSON.stringify(en.body));
    log('problem documents: French for Accept-Language fr, English for en');
  }

  step = 'dispatcher login and live couriers';
  const consoleCtx = await browser.newContext({ locale: 'fr-FR', viewport: { width: 1400, height: 860 } });
  const con = await consoleCtx.newPage();
  watch(con, 'console');
  await con.goto(BASE + '/console/');
  ok(await con.getAttribute('html', 'lang') === 'fr', 'console default language');
  await con.fill('#email', 'dispatcher@demo.tawsil.ma');
  await con.fill('#password', PW);
  await con.click('button[type=submit]');
  await con.waitForSelector('#stream-state[data-state="open"]', { timeout: 20000 });
  await con.waitForFunction(() => Number(document.getElementById('map')?.dataset.liveCouriers) >= 5, null, { timeout: 20000 });
  await con.waitForFunction(() => Number(document.getElementById('map')?.dataset.drawnCouriers) >= 1, null, { timeout: 10000 });
  // Live updates: positions arrive on the event stream.
  await con.waitForFunction(() => typeof window.__tawsilLatency === 'number', null, { timeout: 10000 });
  await con.screenshot({ path: join(ART, 'console-live.png') });
  log('console: dispatcher signed in, 5 live couriers on the map, stream open');

  step = 'book through the API';
  const mtoken = await login('merchant@demo.tawsil.ma');
  const ctoken = await login('courier1@demo.tawsil.ma');
  const courierId = JSON.parse(Buffer.from(ctoken.split('.')[1], 'base64url').toString()).cid;
  ok(courierId === FIRST, `courier1 is ${courierId}, harness has ${FIRST}`);
  const pickup = { lat: 33.5731, lng: -7.5898, address: 'Hanout Maarif, Bd Zerktouni' };
  const dropoff = { lat: 33.5758, lng: -7.5930, address: '12 Rue Secrète, Appartement 4' };
  const customer = { name: 'Fatima Zahra Bennani', phone: '+212612345678' };
  const booked = await api('POST', '/v1/orders', mtoken, { pickup, dropoff, parcel: { size: 'S' }, cod_amount_mad: 120, customer, notes: 'Sonner deux fois' },
    { 'Idempotency-Key': 'browser-' + Date.now() });
  ok(booked.status === 201, `book: ${booked.status} ${JSON.stringify(booked.body)}`);
  const order = booked.body;
  log(`booked order ${order.id}`);

  step = 'the order appears and is assigned from the console';
  await con.waitForSelector(`#lists [data-order="${order.id}"]`, { timeout: 20000 });
  await con.click(`#lists [data-order="${order.id}"]`);
  await con.waitForSelector(`#assign-courier option[value="${courierId}"]`, { timeout: 10000, state: 'attached' });
  await con.selectOption('#assign-courier', courierId);
  await con.click('[data-action="assign"]');
  await con.waitForSelector('#order-status[data-status="assigned"]', { timeout: 15000 });
  const afterAssign = await api('GET', `/v1/orders/${order.id}`, mtoken);
  ok(afterAssign.body.status === 'assigned' && afterAssign.body.courier_id === courierId, 'assigned in the API: ' + afterAssign.body.status);
  await con.screenshot({ path: join(ART, 'console-assigned.png') });
  log('console: order assigned to courier1');

  step = 'courier app: pickup offline, replayed';
  const courierCtx = await browser.newContext({ locale: 'fr-FR', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const app = await courierCtx.newPage();
  watch(app, 'courier');
  await app.goto(BASE + '/courier/');
  await app.fill('#email', 'courier1@demo.tawsil.ma');
  await app.fill('#password', PW);
  await app.click('button[type=submit]');
  await app.waitForSelector(`.task[data-order="${order.id}"][data-status="assigned"]`, { timeout: 20000 });
  await app.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const manifest = await (await fetch(BASE + '/courier/manifest.webmanifest')).json();
  ok(manifest.display === 'standalone' && manifest.icons.some(i => i.sizes === '512x512'), 'installable manifest');
  await move(courierId, pickup.lat, pickup.lng);
  await sleep(1500);
  await courierCtx.setOffline(true);
  await app.waitForSelector('#net[data-online="false"]', { timeout: 5000 });
  await app.click(`.task[data-order="${order.id}"] [data-action="pickup"]`);
  await app.waitForSelector('#pending[data-count="1"]', { timeout: 5000 });
  await app.screenshot({ path: join(ART, 'courier-offline-pending.png') });
  const stillAssigned = await api('GET', `/v1/orders/${order.id}`, mtoken);
  ok(stillAssigned.body.status === 'assigned', 'offline: the server has not seen the pickup yet');
  // The app works offline after a reload (service worker, cached shell and queue).
  await app.reload();
  await app.waitForSelector('#pending[data-count="1"]', { timeout: 10000 });
  await courierCtx.setOffline(false);
  await app.waitForSelector('#pending', { state: 'detached', timeout: 20000 });
  await until('pickup stored', async () => (await api('GET', `/v1/orders/${order.id}`, mtoken)).body.status === 'picked_up');
  const evs = (await api('GET', `/v1/orders/${order.id}/events`, mtoken)).body.events;
  ok(evs.filter(e => e.action === 'pickup').length === 1, 'exactly one pickup event: ' + JSON.stringify(evs.map(e => e.action)));
  log('courier app: pickup taken offline, kept, replayed once when back online');

  step = 'tracking page shows no personal data';
  const trackCtx = await browser.newContext({ locale: 'fr-FR', viewport: { width: 360, height: 740 }, isMobile: true });
  const trk = await trackCtx.newPage();
  watch(trk, 'track');
  await trk.goto(`${BASE}/t/${order.tracking_token}`);
  await trk.waitForSelector('#track-status[data-status="picked_up"]', { timeout: 15000 });
  await trk.waitForSelector('.mini-map .courier', { timeout: 10000 });
  const trackText = await trk.evaluate(() => document.documentElement.outerHTML);
  for (const secret of ['Fatima', 'Bennani', '612345678', 'Secrète', 'Appartement', order.handover_code, 'Sonner', courierId, 'Youssef']) {
    ok(!trackText.includes(secret), `the tracking page shows ${secret}`);
  }
  const pub = await api('GET', `/v1/track/${order.tracking_token}`, null);
  ok(!JSON.stringify(pub.body).match(/Fatima|612345678|Secr|Appartement/), 'tracking JSON has personal data');
  ok(await trk.textContent('#track-status h1') === 'Votre colis est en route', 'tracking page in French');
  await trk.screenshot({ path: join(ART, 'tracking-fr.png'), fullPage: true });
  log('tracking page: timeline, coarse position, no personal data');

  step = 'courier app: deliver with the handover code';
  await move(courierId, dropoff.lat, dropoff.lng);
  await sleep(1500);
  await app.waitForSelector(`.task[data-order="${order.id}"][data-status="picked_up"]`, { timeout: 15000 });
  await app.click(`.task[data-order="${order.id}"] [data-action="deliver"]`);
  await app.fill('#handover-code', order.handover_code);
  await app.fill('#cash', '120');
  await app.screenshot({ path: join(ART, 'courier-deliver.png') });
  await app.click('#deliver-form button[type=submit]');
  await until('delivered', async () => (await api('GET', `/v1/orders/${order.id}`, mtoken)).body.status === 'delivered');
  await app.waitForSelector('#pending', { state: 'detached', timeout: 10000 });
  ok(!(await app.$('#rejected')), 'no action was refused');
  const done = (await api('GET', `/v1/orders/${order.id}`, mtoken)).body;
  ok(done.cash_collected_mad === 120, 'cash collected ' + done.cash_collected_mad);
  await app.screenshot({ path: join(ART, 'courier-delivered.png') });
  log('courier app: delivered with the handover code, cash collected');

  step = 'track replay in the console';
  await con.click(`#lists [data-courier="${courierId}"]`);
  await con.click('[data-action="replay"]');
  await con.waitForFunction(() => Number(document.getElementById('replay-info')?.dataset.points) > 5, null, { timeout: 15000 });
  await con.screenshot({ path: join(ART, 'console-replay.png') });
  const audit = await api('GET', `/v1/audit?subject=${encodeURIComponent('courier:' + courierId)}`, await api('POST', '/v1/auth/login', null,
    { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD }).then(r => r.body.access_token));
  ok(audit.status === 200 && audit.body.entries.some(e => e.action === 'read_track'), 'the replay is audited: ' + JSON.stringify(audit.body).slice(0, 300));
  log('console: courier track replayed, and the read audited');

  step = 'tracking page after delivery, in Arabic';
  await trk.reload();
  await trk.waitForSelector('#track-status[data-status="delivered"]', { timeout: 15000 });
  await trk.selectOption('.lang-switch', 'ar');
  await trk.waitForFunction(() => document.documentElement.dir === 'rtl' && document.documentElement.lang === 'ar');
  ok(await trk.textContent('#track-status h1') === 'تم التسليم', 'tracking page in Arabic');
  await trk.screenshot({ path: join(ART, 'tracking-ar.png'), fullPage: true });

  step = 'console in Arabic';
  await con.selectOption('.lang-switch', 'ar');
  await con.waitForFunction(() => document.documentElement.dir === 'rtl' && document.documentElement.lang === 'ar');
  const summary = await con.textContent('#list-unassigned summary');
  ok(summary.includes('غير مسندة'), 'Arabic list title: ' + summary);
  ok(await con.textContent('header strong') === 'توصيل — لوحة التوزيع', 'Arabic console title');
  ok(await con.$('.leaflet-top.leaflet-left .leaflet-control-zoom'), 'zoom control mirrored to the left');
  ok((await con.title()) === 'توصيل — لوحة التوزيع', 'Arabic document title');
  // The choice sticks: a reload comes back in Arabic (cookie), whatever Accept-Language says.
  await con.reload();
  ok(await con.getAttribute('html', 'dir') === 'rtl', 'Arabic kept after reload');
  await con.waitForSelector('#lists details', { timeout: 15000 });
  await con.screenshot({ path: join(ART, 'console-ar.png') });
  const arProblem = await api('GET', '/v1/orders', null, null, { 'Accept-Language': 'ar' });
  ok(arProblem.body.title === 'المصادقة مطلوبة', 'Arabic problem title');
  log('Arabic: dir=rtl, translated texts, mirrored controls');

  ok(errors.length === 0, 'page errors: ' + errors.join(' | '));
  console.log('ALL PASSED');
} catch (e) {
  console.error('FAILED: ' + (e && e.stack || e));
  for (const p of browser.contexts().flatMap(c => c.pages())) {
    try { await p.screenshot({ path: join(ART, `failure-${p.url().replace(/[^a-z0-9]+/gi, '_').slice(-40)}.png`) }); } catch { /* page gone */ }
  }
  if (errors.length) console.error('page errors: ' + errors.join(' | '));
  process.exitCode = 1;
} finally {
  await browser.close();
}
