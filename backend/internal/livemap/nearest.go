package livemap

import (
	"math"
	"slices"
	"unsafe"
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
func (x *Index) Nearest(lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	return x.NearestAppend(nil, lat, lng, f, k, radiusM)
}

// NearestAppend is Nearest writing its answer into dst's storage (dst's
// contents are discarded), for callers that reuse a buffer.
func (x *Index) NearestAppend(dst []Hit, lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	if k < 1 || radiusM < 0 || math.IsNaN(radiusM) || math.IsNaN(lat) || math.IsNaN(lng) ||
		lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return nil
	}
	q := query{p: vecOf(lat, lng), f: compile(f), k: k, radius: radiusM, b: newBounds(lat, lng)}
	q.top = dst[:0]
	if q.top == nil {
		q.top = make([]Hit, 0, min(k, 64))
	}
	q.setLimit()
	if q.f.accept == 0 {
		return q.top
	}
	row, col := gridCell(lat, lng)
	q.row, q.col = row, col
	occupied := x.grid.occupied.Load()
	var w tileWalker
	defer w.release()
	for r := int32(0); ; r++ {
		if r == 0 {
			x.visit(&q, &w, 0, 0)
		} else {
			for dc := -r; dc <= r; dc++ {
				x.visit(&q, &w, -r, dc)
				x.visit(&q, &w, r, dc)
			}
			for dr := -r + 1; dr < r; dr++ {
				x.visit(&q, &w, dr, -r)
				x.visit(&q, &w, dr, r)
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
			return q.top
		}
		// Rings 0..r+1 have (2r+3)² cells: past the occupied cells, a scan
		// of those is cheaper (and rings never cost more than twice a scan).
		if n := int64(2*r+3) * int64(2*r+3); n*x.ringCost > occupied || 2*r+3 > gridCols/2 {
			w.release()
			return x.fullScan(q)
		}
	}
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
	q.scanCell(&t.cells[cellSlot(row, col)])
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
func (x *Index) fullScan(q query) []Hit {
	q.top = q.top[:0]
	q.setLimit()
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
				q.scanCell(l)
			}
		}
		t.mu.RUnlock()
	}
	return q.top
}

// compiledFilter is a Filter in the form the scan loop tests quickly.
type compiledFilter struct {
	accept   uint16 // bit per entry class (classOf) that passes
	minSpare int32
	vehicles []string
	exclude  map[string]struct{}
}

func compile(f Filter) compiledFilter {
	cf := compiledFilter{vehicles: f.Vehicles, exclude: f.Exclude}
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
	return cf
}

// lbMemo is how many ring offsets a query remembers bounds for.
const lbMemo = 32

type query struct {
	p        vec3
	b        bounds
	row, col int32 // the query point's grid cell
	f        compiledFilter
	k        int
	radius   float64
	// rowLBs and colLBs memoise rowLB and colLB by offset (+lbMemo), plus one.
	rowLBs, colLBs [2 * lbMemo]float64
	top            []Hit // sorted by (DistanceM, ID), at most k
	// limC2 is a squared chord length beyond which a courier is certainly
	// farther than the radius or the k-th best: a cheap test before the
	// exact distance (which needs an arcsine).
	limC2 float64
}

// setLimit recomputes limC2 from the radius and the k-th best distance,
// padded so that rounding can only let more couriers through to the exact test.
func (q *query) setLimit() {
	lim := q.radius
	if len(q.top) == q.k {
		lim = min(lim, q.top[q.k-1].DistanceM)
	}
	half := lim / (2 * earthRadiusM)
	if half >= math.Pi/2 {
		q.limC2 = math.Inf(1)
		return
	}
	ch := 2 * math.Sin(half)
	q.limC2 = ch*ch*(1+1e-9) + 1e-18
}

// prune reports whether nothing at distance ≥ lb can enter the answer.
func (q *query) prune(lb float64) bool {
	return lb > q.radius || (len(q.top) == q.k && lb > q.top[q.k-1].DistanceM)
}

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

// scanCell offers the couriers of one grid cell to q, from the lists that
// can hold a match. The caller holds the cell's tile read lock.
func (q *query) scanCell(l *cellLists) {
	if q.f.accept&(1<<hotClass) != 0 {
		q.scan(l[0])
	}
	if q.f.accept&^(1<<hotClass) != 0 {
		q.scan(l[1])
	}
}

// scan offers the couriers of one list to q. The caller holds the
// cell's tile read lock.
func (q *query) scan(es []entry) {
	for i := range es {
		e := &es[i]
		if q.f.accept>>e.class&1 == 0 || e.spare < q.f.minSpare {
			continue
		}
		dx, dy, dz := q.p.x-e.v.x, q.p.y-e.v.y, q.p.z-e.v.z
		if dx*dx+dy*dy+dz*dz > q.limC2 {
			continue
		}
		d := distM(q.p, e.v)
		if d > q.radius {
			continue
		}
		if len(q.top) == q.k {
			last := &q.top[q.k-1]
			if d > last.DistanceM || d == last.DistanceM && e.c.id >= last.ID {
				continue
			}
		}
		if len(q.f.vehicles) > 0 && !slices.Contains(q.f.vehicles, e.c.vehicle) {
			continue
		}
		if _, ok := q.f.exclude[e.c.id]; ok {
			continue
		}
		h := Hit{Courier: e.c.snapshot(), DistanceM: d}
		q.add(&h)
	}
}

func hitLess(a, b *Hit) bool {
	return a.DistanceM < b.DistanceM || a.DistanceM == b.DistanceM && a.ID < b.ID
}

// add inserts h in order, keeping at most k. A courier already present (it
// moved between cells during the search) keeps its nearer sighting.
func (q *query) add(h *Hit) {
	for i := range q.top {
		if sameString(q.top[i].ID, h.ID) {
			if !hitLess(h, &q.top[i]) {
				return
			}
			copy(q.top[i:], q.top[i+1:])
			q.top = q.top[:len(q.top)-1]
			break
		}
	}
	i := len(q.top)
	for i > 0 && hitLess(h, &q.top[i-1]) {
		i--
	}
	if len(q.top) == q.k {
		if i == q.k {
			return
		}
		q.top = q.top[:q.k-1]
	}
	q.top = append(q.top, Hit{})
	copy(q.top[i+1:], q.top[i:])
	q.top[i] = *h
	if len(q.top) == q.k {
		q.setLimit()
	}
}

// sameString reports whether a and b share their bytes: a courier's ID in
// a Hit is always its record's own string, so this is the identity test
// without comparing bytes.
func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}
