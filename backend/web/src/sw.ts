// The courier app's service worker: the app shell (page, script, styles,
// texts, icons) is served from the cache when the network is down, so the
// app opens offline; API calls are never cached (the app keeps its own
// last task list and its queue of pending actions).
/// <reference lib="webworker" />
declare const self: ServiceWorkerGlobalScope;
const CACHE = 'tawsil-courier-v1';
const SHELL = ['/courier/', '/assets/courier.js', '/assets/courier.css', '/courier/manifest.webmanifest', '/assets/icon.svg', '/assets/icon-192.png',
  '/ui/i18n/fr', '/ui/i18n/ar', '/ui/i18n/en'];

self.addEventListener('install', e => {
  e.waitUntil(caches.open(CACHE).then(c => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', e => {
  e.waitUntil(caches.keys().then(keys => Promise.all(keys.filter(k => k !== CACHE).map(k => caches.delete(k)))).then(() => self.clients.claim()));
});

self.addEventListener('fetch', e => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || url.pathname.startsWith('/v1/')) return;
  // Network first (fresh code and texts when online), cache when offline.
  e.respondWith(fetch(e.request).then(res => {
    if (res.ok && (SHELL.includes(url.pathname) || url.pathname.startsWith('/assets/'))) {
      const copy = res.clone();
      void caches.open(CACHE).then(c => c.put(e.request, copy));
    }
    return res;
  }).catch(async () => (await caches.match(e.request, { ignoreVary: true })) || (await caches.match('/courier/', { ignoreVary: true })) || Response.error()));
});
