// Console under load (run by BenchmarkConsoleLiveCouriers): sign in, wait
// for every live courier, then pan the map for 15 s while counting frames
// (requestAnimationFrame) and reading the couriers layer's own figures:
// time to draw a frame, and publish-to-drawn latency of couriers.updated.
// Prints one JSON line.
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL, N = Number(process.env.COURIERS || 10000);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 860 } })).newPage();
  await page.goto(BASE + '/console/');
  await page.fill('#email', 'dispatcher@demo.tawsil.ma');
  await page.fill('#password', process.env.DEMO_PASSWORD || 'tawsil-demo-2026');
  await page.click('button[type=submit]');
  await page.waitForFunction(n => Number(document.getElementById('map')?.dataset.liveCouriers) >= n, N, { timeout: 120000 });
  await page.evaluate(() => { const s = window.__tawsilStats; s.latencyMs.length = 0; s.drawMs.length = 0; });
  await page.evaluate(() => {
    window.__frames = 0;
    const tick = () => { window.__frames++; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  const box = await page.locator('#map').boundingBox();
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  const t0 = Date.now();
  let dir = 1;
  while (Date.now() - t0 < 15000) { // the dispatcher drags the map to and fro
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let i = 0; i < 10; i++) await page.mouse.move(cx + dir * i * 12, cy + dir * i * 6);
    await page.mouse.up();
    dir = -dir;
    await page.waitForTimeout(200);
  }
  const secs = (Date.now() - t0) / 1000;
  const r = await page.evaluate(() => ({ frames: window.__frames, lat: window.__tawsilStats.latencyMs.slice(), draw: window.__tawsilStats.drawMs.slice() }));
  const q = (xs, p) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
  const round = x => Math.round(x * 10) / 10;
  console.log(JSON.stringify({ couriers: N, frames: r.frames, fps: round(r.frames / secs), drawP50: round(q(r.draw, 0.5)), drawP95: round(q(r.draw, 0.95)),
    latencyP50: round(q(r.lat, 0.5)), latencyP95: round(q(r.lat, 0.95)) }));
} finally {
  await browser.close();
}
