package livemap

import (
	"cmp"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/tawsil/tawsil/backend/internal/geo"
)

// Nearest returns up to k couriers matching f within radiusM metres of
// (lat, lng), nearest first by great-circle distance (DistanceM), ties
// broken by id. It returns nil for k < 1, radiusM < 0 or an invalid point.
//
// The search visits the grid in square rings of cells around the point's
// cell. After rings 0..r it stops once no point outside them can be within
// the radius or nearer than the k-th best: such a point lies beyond one of
// the block's four edges, two parallels and two meridians, whose distances
// bounds.rowsLB and bounds.colsLB give from below. Cells of a ring are
// skipped the same way. When the rings would cost more than a scan of the
// occupied cells (a sparse fleet or a rare filter), it scans those instead,
// tile by tile, with the same bounds. Either way the answer equals a
// brute-force scan. No H3 (cgo) call is made.
//
// Candidates are ranked by the squared chord between unit vectors, which
// orders points as the great-circle distance does, and kept with a margin
// (candMargin) so that rounding cannot lose a tie; the exact distance, the
// tie break by id and the snapshot of each courier are done only for the
// final candidates. The scan reads nothing but the grid's entries.
func (x *Index) Nearest(lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	return x.NearestAppend(nil, lat, lng, f, k, radiusM)
}

// NearestAppend is Nearest writing its answer into dst's storage (dst's
// contents are discarded), for callers that reuse a buffer: with a dst of
// capacity k and at most 8 excluded couriers it allocates nothing.
func (x *Index) NearestAppend(dst []Hit, lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	if k < 1 || radiusM < 0 || math.IsNaN(radiusM) || math.IsNaN(lat) || math.IsNaN(lng) ||
		lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return nil
	}
	var q query
	q.init(x, lat, lng, f, k, radiusM)
	if dst == nil {
		dst = make([]Hit, 0, min(k, 64))
	}
	if q.f.accept == 0 {
		return dst[:0]
	}
	for attempt := 0; ; attempt++ {
		q.reset()
		x.search(&q)
		out, ok := x.finish(&q, dst[:0], attempt >= maxAttempts)
		if ok {
			return out
		}
	}
}

// maxAttempts is how many times a query is searched again when a final
// candidate moved or changed between the search and its snapshot, before
// it takes the candidates as they are then (see finish).
const maxAttempts = 3

// search runs the ring search (or the full scan) of q.
func (x *Index) search(q *query) {
	row := q.row
	occupied := x.grid.occupied.Load()
	var w tileWalker
	defer w.release()
	for r := int32(0); ; r++ {
		if r == 0 {
			x.visit(q, &w, 0, 0)
		} else {
			for dc := -r; dc <= r; dc++ {
				x.visit(q, &w, -r, dc)
				x.visit(q, &w, r, dc)
			}
			for dr := -r + 1; dr < r; dr++ {
				x.visit(q, &w, dr, -r)
				x.visit(q, &w, dr, r)
			}
		}
		// Everything not yet visited is beyond an edge of the block.
		bound := math.Inf(1)
		if row-r-1 >= 0 {
			bound = min(bound, q.rowLB(-r-1))
		}
		if row+r+1 < gridRows {
			bound = min(bound, q.rowLB(r+1))
		}
		if 2*r+1 < gridCols {
			bound = min(bound, q.colLB(-r-1), q.colLB(r+1))
		}
		if q.prune(bound) {
			return
		}
		// Rings 0..r+1 have (2r+3)² cells: past the occupied cells, a scan
		// of those is cheaper (and rings never cost more than twice a scan).
		if n := int64(2*r+3) * int64(2*r+3); n*x.ringCost > occupied || 2*r+3 > gridCols/2 {
			w.release()
			q.reset()
			x.fullScan(q)
			return
		}
	}
}

// finish turns q's candidates into the answer: exact distances, the radius,
// the order by (distance, id), at most k, and a snapshot of each courier
// taken under its tile's lock. A candidate that moved or changed since the
// search saw it makes finish report !ok (search again), unless last: then
// it is taken as it is now, with its distance, the filter and the radius
// checked again.
func (x *Index) finish(q *query, dst []Hit, last bool) ([]Hit, bool) {
	cs := q.cands()
	for i := range cs {
		cs[i].d = distM(q.p, cs[i].e.v)
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.d < b.d:
			return -1
		case a.d > b.d:
			return 1
		}
		return strings.Compare(a.e.c.id, b.e.c.id)
	})
	n := 0
	for n < len(cs) && n < q.k && cs[n].d <= q.radius {
		n++
	}
	cs = cs[:n]
	// Ask for the answer's courier records, all at once, before copying
	// them one by one: their memory misses overlap rather than queue.
	for i := range cs {
		p := uintptr(unsafe.Pointer(cs[i].e.c))
		prefetch4(p, p+64, p+128, p+192)
	}
	moved := false
	var locked *tile // held across consecutive candidates of one tile
	for i := range cs {
		c := &cs[i]
		if c.t != locked {
			if locked != nil {
				locked.mu.RUnlock()
			}
			locked = c.t
			locked.mu.RLock()
		}
		if l := c.t.cells[c.slot][c.list]; int(c.pos) < len(l) && l[c.pos] == c.e &&
			(len(q.f.vehicles) == 0 || slices.Contains(q.f.vehicles, c.e.c.vehicle)) {
			dst = append(dst, Hit{Courier: c.e.c.snapshot(), DistanceM: c.d})
		} else {
			moved = true
			if !last {
				break
			}
		}
	}
	if locked != nil {
		locked.mu.RUnlock()
	}
	if moved && !last {
		return dst[:0], false
	}
	if !moved {
		return dst, true
	}
	// The last attempt: whoever moved is taken where it is now.
	dst = dst[:0]
	for i := range cs {
		c := &cs[i]
		cur, ok := x.Get(c.e.c.id)
		if !ok || !cur.HasFix || !q.f.matches(&cur) {
			continue
		}
		if d := geo.DistanceLatLngM(q.b.lat, q.b.lng, cur.Fix.Lat, cur.Fix.Lng); d <= q.radius {
			dst = append(dst, Hit{Courier: cur, DistanceM: d})
		}
	}
	slices.SortFunc(dst, func(a, b Hit) int {
		return cmp.Or(cmp.Compare(a.DistanceM, b.DistanceM), strings.Compare(a.ID, b.ID))
	})
	return dst, true
}

// visit scans the cell dr rows and dc columns from the query's cell.
func (x *Index) visit(q *query, w *tileWalker, dr, dc int32) {
	row := q.row + dr
	if row < 0 || row >= gridRows {
		return
	}
	if q.prune(max(q.rowLB(dr), q.colLB(dc))) {
		return
	}
	col := wrapCol(q.col + dc)
	t := w.tile(&x.grid, row, col)
	if t == nil {
		return
	}
	q.scanCell(t, cellSlot(row, col))
}

// tileWalker holds the read lock of one tile at a time, so that a query
// never waits for a tile while holding another (which could deadlock with
// writers queued on both).
type tileWalker struct {
	key    uint64
	t      *tile
	locked bool
	valid  bool
}

func (w *tileWalker) tile(g *grid, row, col int32) *tile {
	key := tileKey(row, col)
	if w.valid && key == w.key {
		return w.t
	}
	w.release()
	w.key, w.valid = key, true
	w.t = g.tile(key)
	if w.t != nil {
		w.t.mu.RLock()
		w.locked = true
	}
	return w.t
}

func (w *tileWalker) release() {
	if w.locked {
		w.t.mu.RUnlock()
		w.locked = false
	}
	w.valid = false
}

// fullScan answers q by visiting every occupied cell, tile by tile.
func (x *Index) fullScan(q *query) {
	for _, t := range *x.grid.tiles.Load() {
		if t.n.Load() == 0 || q.prune(q.b.cellLB(t.row0, t.row0+tileMask, t.col0, t.col0+tileMask)) {
			continue
		}
		t.mu.RLock()
		for i := range t.cells {
			l := &t.cells[i]
			if l.empty() {
				continue
			}
			row, col := t.row0+int32(i>>tileShift), t.col0+int32(i&tileMask)
			if !q.prune(q.b.cellLB(row, row, col, col)) {
				q.scanCell(t, uint16(i))
			}
		}
		t.mu.RUnlock()
	}
}

// compiledFilter is a Filter in the form the scan loop tests quickly.
type compiledFilter struct {
	accept   uint16 // bit per entry class (classOf) that passes
	minSpare int32
	vehicles []string
	exclude  map[string]struct{}
	// With few excluded couriers, their id hashes and ids: an entry is
	// tested on its hash, without reading its courier's record.
	exN      int
	exHashes [maxExHashes]uint64
	exIDs    [maxExHashes]string
}

// maxExHashes is how many excluded couriers are tested by hash.
const maxExHashes = 8

func (x *Index) compile(f Filter) compiledFilter {
	cf := compiledFilter{vehicles: f.Vehicles}
	statuses := uint8(0)
	for _, s := range f.Statuses {
		if s < numStatuses {
			statuses |= 1 << s
		}
	}
	for cl := range 16 {
		st, online, onShift := Status(cl&3), cl&4 != 0, cl&8 != 0
		if len(f.Statuses) > 0 && statuses&(1<<st) == 0 || f.Online && !online || f.OnShift && !onShift {
			continue
		}
		cf.accept |= 1 << cl
	}
	cf.minSpare = int32(max(min(f.MinSpare, math.MaxInt32), math.MinInt32))
	if len(f.Exclude) <= maxExHashes {
		for id := range f.Exclude {
			cf.exHashes[cf.exN] = maphash.String(x.seed, id)
			cf.exIDs[cf.exN] = id
			cf.exN++
		}
	} else {
		cf.exclude = f.Exclude
	}
	return cf
}

// excluded reports whether the courier of e is excluded.
func (cf *compiledFilter) excluded(e *entry) bool {
	for i := range cf.exN {
		if cf.exHashes[i] == e.hash && cf.exIDs[i] == e.c.id {
			return true
		}
	}
	if cf.exclude != nil {
		_, ok := cf.exclude[e.c.id]
		return ok
	}
	return false
}

// matches is the whole filter on a snapshot.
func (cf *compiledFilter) matches(c *Courier) bool {
	if cf.accept>>classOf(c.Status, c.Online, c.OnShift)&1 == 0 || int64(c.Capacity-c.Load) < int64(cf.minSpare) {
		return false
	}
	if len(cf.vehicles) > 0 && !slices.Contains(cf.vehicles, c.Vehicle) {
		return false
	}
	for i := range cf.exN {
		if cf.exIDs[i] == c.ID {
			return false
		}
	}
	_, ok := cf.exclude[c.ID]
	return !ok
}

// lbMemo is how many ring offsets a query remembers bounds for.
const lbMemo = 32

// candMargin is the relative margin on the k-th squared chord within which
// candidates are kept: far above the rounding of the exact distance (a
// square root and an arcsine of the same squared chord), so that the
// k nearest by distance, ties by id, are always among the candidates.
const (
	candMargin = 1e-9
	candTiny   = 1e-24 // absolute, for couriers on top of the point (a chord of 6 µm)
)

// cand is a candidate of a query: its grid entry as the search saw it and
// where it was (to check at the end that it is still there, unchanged).
type cand struct {
	e    entry
	c2   float64 // squared chord from the query point
	d    float64 // exact distance, filled by finish
	t    *tile
	pos  int32
	slot uint16
	list uint8
}

// candInline is how many candidates a query holds without allocating.
const candInline = 32

type query struct {
	p        vec3
	b        bounds
	row, col int32 // the query point's grid cell
	f        compiledFilter
	k        int
	radius   float64
	radC2    float64 // squared chord of the radius, rounded up
	// rowLBs and colLBs memoise rowLB and colLB by offset (+lbMemo), plus one.
	rowLBs, colLBs [2 * lbMemo]float64
	// The candidates, sorted by c2: the k nearest and any within candMargin
	// of the k-th; n of them, in buf or, past candInline, in big (see cands).
	n   int
	buf [candInline]cand
	big []cand
	// limC2 is the squared chord beyond which an entry cannot be a
	// candidate (radius, k-th best); pruneM the same as a distance in
	// metres, rounded up, for the bounds of cells.
	limC2, pruneM float64
}

func (q *query) init(x *Index, lat, lng float64, f Filter, k int, radiusM float64) {
	q.p, q.f, q.k, q.radius, q.b = vecOf(lat, lng), x.compile(f), k, radiusM, newBounds(lat, lng)
	q.row, q.col = gridCell(lat, lng)
	q.radC2 = chord2Above(radiusM)
}

// reset empties the candidates.
func (q *query) reset() {
	q.n = 0
	q.limC2, q.pruneM = q.radC2, q.radius
}

// chord2Above is the squared chord of a great-circle distance in metres,
// rounded up so that rounding can only let more couriers through.
func chord2Above(m float64) float64 {
	half := m / (2 * earthRadiusM)
	if half >= math.Pi/2 {
		return math.Inf(1)
	}
	ch := 2 * math.Sin(half)
	return ch*ch*(1+1e-9) + 1e-18
}

// distAbove is an upper bound in metres of the distance of a squared chord:
// with h half the chord, asin(h) ≤ h/√(1-h²) (tan θ ≥ θ), which at city
// distances exceeds it by h²/3 (0.2 ppm at 5 km) and needs no arcsine.
func distAbove(c2 float64) float64 {
	h2 := c2 / 4
	if h2 >= 0.25 { // past 60° the bound loosens: use the arcsine
		if h2 >= 1 {
			return math.Inf(1)
		}
		return 2*earthRadiusM*math.Asin(math.Sqrt(h2))*(1+1e-9) + 1e-6
	}
	return 2*earthRadiusM*math.Sqrt(h2/(1-h2))*(1+1e-9) + 1e-6
}

// prune reports whether nothing at distance ≥ lb can be a candidate.
func (q *query) prune(lb float64) bool { return lb > q.pruneM }

// rowLB bounds the distance to the row dr rows from the query's.
func (q *query) rowLB(dr int32) float64 {
	if dr == 0 {
		return 0
	}
	i := dr + lbMemo
	if i < 0 || i >= 2*lbMemo {
		return q.b.rowsLB(q.row+dr, q.row+dr)
	}
	if v := q.rowLBs[i]; v != 0 {
		return v - 1
	}
	v := q.b.rowsLB(q.row+dr, q.row+dr)
	q.rowLBs[i] = v + 1
	return v
}

// colLB bounds the distance to the column dc columns from the query's.
func (q *query) colLB(dc int32) float64 {
	if dc == 0 {
		return 0
	}
	i := dc + lbMemo
	if i < 0 || i >= 2*lbMemo {
		return q.b.colsLB(q.col+dc, q.col+dc)
	}
	if v := q.colLBs[i]; v != 0 {
		return v - 1
	}
	v := q.b.colsLB(q.col+dc, q.col+dc)
	q.colLBs[i] = v + 1
	return v
}

// scanCell offers the couriers of one grid cell of t to q, from the lists
// that can hold a match. The caller holds t's read lock.
func (q *query) scanCell(t *tile, slot uint16) {
	l := &t.cells[slot]
	if q.f.accept&(1<<hotClass) != 0 {
		q.scan(l[0], t, slot, 0)
	}
	if q.f.accept&^(1<<hotClass) != 0 {
		q.scan(l[1], t, slot, 1)
	}
}

// scan offers the couriers of one list to q. The caller holds the tile's
// read lock. It reads a courier's record only for the vehicle filter and
// an excluded id whose hash matches.
func (q *query) scan(es []entry, t *tile, slot uint16, list uint8) {
	for i := range es {
		e := &es[i]
		if q.f.accept>>e.class&1 == 0 || e.spare < q.f.minSpare {
			continue
		}
		dx, dy, dz := q.p.x-e.v.x, q.p.y-e.v.y, q.p.z-e.v.z
		c2 := dx*dx + dy*dy + dz*dz
		if c2 > q.limC2 {
			continue
		}
		if q.f.excluded(e) || len(q.f.vehicles) > 0 && !slices.Contains(q.f.vehicles, e.c.vehicle) {
			continue
		}
		q.offer(e, c2, t, slot, list, int32(i))
	}
}

// cands returns the candidates (q's own storage).
func (q *query) cands() []cand {
	if q.big != nil {
		return q.big[:q.n]
	}
	return q.buf[:q.n]
}

// offer inserts a candidate in order. A courier already present (it moved
// between cells during the search) keeps its nearer sighting. Past k, the
// candidates beyond the margin of the k-th are dropped.
func (q *query) offer(e *entry, c2 float64, t *tile, slot uint16, list uint8, pos int32) {
	cs := q.cands()
	for i := range cs {
		if cs[i].e.c == e.c {
			if cs[i].c2 <= c2 {
				return
			}
			copy(cs[i:], cs[i+1:])
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == cap(cs) {
		q.big = append(make([]cand, 0, 2*cap(cs)), cs...)
		cs = q.big
	}
	i := len(cs)
	for i > 0 && cs[i-1].c2 > c2 {
		i--
	}
	cs = cs[:len(cs)+1]
	copy(cs[i+1:], cs[i:])
	cs[i] = cand{e: *e, c2: c2, t: t, pos: pos, slot: slot, list: list}
	if len(cs) >= q.k {
		thr := cs[q.k-1].c2*(1+candMargin) + candTiny
		for len(cs) > q.k && cs[len(cs)-1].c2 > thr {
			cs = cs[:len(cs)-1]
		}
		if thr < q.limC2 {
			q.limC2 = thr
			q.pruneM = min(q.radius, distAbove(thr))
		}
	}
	q.n = len(cs)
}
