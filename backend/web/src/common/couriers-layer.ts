// A Leaflet layer that draws every live courier on one canvas, clustered on
// a screen grid below street zoom: O(couriers) per frame, no DOM node per
// courier, so 10,000 couriers stay smooth (see bench/console.mjs).
import * as L from 'leaflet';

export interface LiveCourier {
  id: string; name?: string; lat: number; lng: number; status: string; load: number; capacity: number; online: boolean;
  battery?: number; updated?: number;
}

const COLORS: Record<string, string> = { available: '#1a9850', busy: '#2c7bb6', on_break: '#fdae61', offline: '#8c8c8c' };

export class CouriersLayer extends L.Layer {
  private canvas!: HTMLCanvasElement;
  private frame = 0;
  private drawn: Array<{ x: number; y: number; r: number; ids: string[] }> = [];
  selected = '';
  cluster = true;
  /** lastDraw is the time (performance.now) the last frame finished; the bench reads it. */
  lastDraw = 0;
  draws = 0;
  /** pendingSince is the server time of the oldest update not yet drawn (update latency, measured by the bench). */
  pendingSince = 0;
  readonly stats = { latencyMs: [] as number[], drawMs: [] as number[] };

  constructor(private data: Map<string, LiveCourier>, private onPick: (ids: string[], at: L.LatLng) => void) { super(); }

  onAdd(map: L.Map): this {
    this.canvas = L.DomUtil.create('canvas', 'couriers-canvas leaflet-zoom-hide') as HTMLCanvasElement;
    this.canvas.style.position = 'absolute';
    this.canvas.style.pointerEvents = 'none';
    map.getPanes().overlayPane.appendChild(this.canvas);
    map.on('moveend zoomend resize', this.redraw, this);
    map.on('click', this.click, this);
    this.redraw();
    return this;
  }

  onRemove(map: L.Map): this {
    map.off('moveend zoomend resize', this.redraw, this);
    map.off('click', this.click, this);
    this.canvas.remove();
    return this;
  }

  /** redraw schedules one frame (many updates in a frame draw once). */
  redraw(): void {
    if (this.frame || !this._map) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  private draw(): void {
    const t0 = performance.now();
    const map = this._map;
    const size = map.getSize();
    const dpr = window.devicePixelRatio || 1;
    const topLeft = map.containerPointToLayerPoint([0, 0]);
    L.DomUtil.setPosition(this.canvas, topLeft);
    if (this.canvas.width !== size.x * dpr || this.canvas.height !== size.y * dpr) {
      this.canvas.width = size.x * dpr; this.canvas.height = size.y * dpr;
      this.canvas.style.width = size.x + 'px'; this.canvas.style.height = size.y + 'px';
    }
    const ctx = this.canvas.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size.x, size.y);
    const bounds = map.getBounds().pad(0.05);
    const clustering = this.cluster && map.getZoom() < 15;
    const cell = 44;
    const bins = new Map<number, { x: number; y: number; ids: string[]; avail: number }>();
    const singles: Array<{ x: number; y: number; c: LiveCourier }> = [];
    for (const c of this.data.values()) {
      if (!bounds.contains([c.lat, c.lng])) continue;
      const p = map.latLngToContainerPoint([c.lat, c.lng]);
      if (!clustering || c.id === this.selected) { singles.push({ x: p.x, y: p.y, c }); continue; }
      const k = Math.floor(p.x / cell) * 100000 + Math.floor(p.y / cell);
      let b = bins.get(k);
      if (!b) { b = { x: 0, y: 0, ids: [], avail: 0 }; bins.set(k, b); }
      b.x += p.x; b.y += p.y; b.ids.push(c.id);
      if (c.status === 'available' && c.online) b.avail++;
    }
    this.drawn = [];
    for (const b of bins.values()) {
      const n = b.ids.length;
      const x = b.x / n, y = b.y / n;
      if (n === 1) { singles.push({ x, y, c: this.data.get(b.ids[0])! }); continue; }
      const r = Math.min(26, 10 + Math.log2(n) * 3);
      ctx.beginPath(); ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.fillStyle = b.avail > 0 ? 'rgba(26,152,80,0.80)' : 'rgba(44,123,182,0.80)';
      ctx.fill(); ctx.lineWidth = 2; ctx.strokeStyle = '#fff'; ctx.stroke();
      ctx.fillStyle = '#fff'; ctx.font = 'bold 12px system-ui, sans-serif'; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
      ctx.fillText(String(n), x, y);
      this.drawn.push({ x, y, r, ids: b.ids });
    }
    for (const { x, y, c } of singles) {
      const r = c.id === this.selected ? 9 : 6;
      ctx.beginPath(); ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.fillStyle = c.online ? (COLORS[c.status] || '#555') : COLORS.offline;
      ctx.fill(); ctx.lineWidth = c.id === this.selected ? 3 : 1.5; ctx.strokeStyle = c.id === this.selected ? '#111' : '#fff'; ctx.stroke();
      if (c.load > 0) {
        ctx.fillStyle = '#111'; ctx.font = 'bold 10px system-ui, sans-serif'; ctx.textAlign = 'center'; ctx.textBaseline = 'bottom';
        ctx.fillText(String(c.load), x, y - r - 1);
      }
      this.drawn.push({ x, y, r: r + 3, ids: [c.id] });
    }
    this.lastDraw = performance.now();
    this.draws++;
    if (this.stats.drawMs.length < 10000) this.stats.drawMs.push(this.lastDraw - t0);
    if (this.pendingSince) {
      if (this.stats.latencyMs.length < 10000) this.stats.latencyMs.push(Date.now() - this.pendingSince);
      this.pendingSince = 0;
    }
    map.getContainer().dataset.drawnCouriers = String(singles.length + [...bins.values()].reduce((a, b) => a + (b.ids.length > 1 ? b.ids.length : 0), 0));
  }

  private click(e: L.LeafletMouseEvent): void {
    const p = e.containerPoint;
    for (let i = this.drawn.length - 1; i >= 0; i--) {
      const d = this.drawn[i];
      if ((d.x - p.x) ** 2 + (d.y - p.y) ** 2 <= d.r * d.r) {
        if (d.ids.length > 1) this._map.setView(this._map.containerPointToLatLng([d.x, d.y]), this._map.getZoom() + 2);
        else this.onPick(d.ids, e.latlng);
        return;
      }
    }
  }
}
