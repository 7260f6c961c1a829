// The pin scenario (run by pin_browser_test.go against a live backend): a
// merchant books an informal address (a description and a landmark, no
// coordinates); the customer opens the tracking link in a phone-sized
// Chromium whose location is granted, uses it as the drop-off pin and
// confirms; the order takes that point, is dispatched to it, and the page
// shows no personal data.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.BASE_URL, ART = process.env.ARTIFACTS || 'test-artifacts';
mkdirSync(ART, { recursive: true });
let step = '';
function ok(cond, msg) { if (!cond) throw new Error(`${step}: ${msg}`); }
async function api(method, path, token, body, headers = {}) {
  const res = await fetch(BASE + path, { method, headers: { ...(token ? { Authorization: 'Bearer ' + token } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) { last = await fn(); if (last) return last; await sleep(250); }
  throw new Error(`${step}: timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
try {
  step = 'book an informal address';
  const admin = (await api('POST', '/v1/auth/login', null, { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD })).body.access_token;
  ok(admin, 'admin login');
  const email = `pin-merchant-${Date.now()}@tawsil.test`, password = 'pin-merchant-password';
  ok((await api('POST', '/v1/users', admin, { email, password, role: 'merchant', name: 'Épicerie Derb Omar' })).status === 201, 'merchant created');
  const merchant = (await api('POST', '/v1/auth/login', null, { email, password })).body.access_token;
  const booked = await api('POST', '/v1/orders', merchant, {
    pickup: { lat: 33.5731, lng: -7.5898, address: 'Épicerie Derb Omar' },
    dropoff: { address: 'Derb Sultan, rue 12', landmark: 'près de la mosquée, 3e étage, porte verte' },
    parcel: { size: 'S' }, customer: { name: 'Fatima Zahra Bennani', phone: '+212612345678' }, confirm_within_min: 30,
  }, { 'Idempotency-Key': 'pin-' + Date.now() });
  ok(booked.status === 201 && booked.body.pin && booked.body.pin.status === 'unconfirmed', `booking ${booked.status} ${JSON.stringify(booked.body)}`);
  const order = booked.body;

  step = 'the customer drops the pin from the tracking page';
  const here = { latitude: 33.5802, longitude: -7.6003 };
  const ctx = await browser.newContext({ viewport: { width: 390, height: 800 }, locale: 'fr-FR', geolocation: here, permissions: ['geolocation'] });
  const page = await ctx.newPage();
  page.on('pageerror', e => errors.push(e.message));
  await page.goto(`${BASE}/t/${order.tracking_token}`);
  await page.waitForSelector('#pin-card');
  ok((await page.textContent('#pin-card h2')) === 'Confirmez votre point de livraison', 'the pin card speaks French');
  ok(await page.isDisabled('#pin-confirm'), 'nothing to confirm before a point is chosen');
  await page.screenshot({ path: join(ART, 'pin-ask.png'), fullPage: true });
  await page.click('#pin-locate');
  await page.waitForSelector('#pin-confirm:not([disabled])');
  await page.screenshot({ path: join(ART, 'pin-chosen.png'), fullPage: true });
  await page.click('#pin-confirm');
  await page.waitForSelector('#pin-done');
  await page.screenshot({ path: join(ART, 'pin-confirmed.png'), fullPage: true });
  const text = await page.textContent('body');
  for (const secret of ['Fatima', 'Bennani', '612345678', 'mosquée', 'Derb Sultan', order.handover_code]) ok(!text.includes(secret), `the page shows ${secret}`);

  step = 'the order takes the pin and is dispatched to it';
  const after = await until('dispatch to the pin', async () => {
    const r = await api('GET', `/v1/orders/${order.id}`, merchant);
    return r.body && (r.body.offered_to || r.body.courier_id) ? r.body : null;
  });
  ok(Math.abs(after.dropoff.lat - here.latitude) < 1e-6 && Math.abs(after.dropoff.lng - here.longitude) < 1e-6, `drop-off ${JSON.stringify(after.dropoff)}`);
  ok(after.pin.status === 'confirmed' && after.pin.confirmed_by === 'customer', `pin ${JSON.stringify(after.pin)}`);
  ok(after.dropoff.landmark === 'près de la mosquée, 3e étage, porte verte', 'the landmark stays for the courier');
  const events = await api('GET', `/v1/orders/${order.id}/events`, merchant);
  ok(JSON.stringify(events.body).includes('"pin_confirmed"'), 'the pin is an event of the order');
  ok(errors.length === 0, 'page errors: ' + errors.join('; '));
  console.log('ALL PASSED');
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
