package livemap

import (
	"math"
	"slices"

	"github.com/uber/h3-go/v4"
)

// Nearest returns up to k couriers matching f within radiusM metres of
// (lat, lng), nearest first by great-circle distance (DistanceM), ties
// broken by id. It returns nil for k < 1, radiusM < 0 or an invalid point.
//
// The search expands H3 rings around the point's res-9 cell. After rings
// 0..r it stops once no point of ring r+1 can be within the radius or nearer
// than the k-th best: any courier outside rings 0..r is at least as far as
// the nearest point of ring r+1 (a path out of the disk crosses that ring),
// which cellGeom.lowerBoundM bounds from below. When the
// rings would cost more than a scan of the occupied cells, it scans those
// instead, with the same per-cell bound. Either way the answer equals a
// brute-force scan.
func (x *Index) Nearest(lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	if k < 1 || radiusM < 0 || math.IsNaN(radiusM) || math.IsNaN(lat) || math.IsNaN(lng) ||
		lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return nil
	}
	c0, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
	if err != nil {
		return nil
	}
	q := query{p: vecOf(lat, lng), f: compile(f), k: k, radius: radiusM}
	q.top = make([]Hit, 0, min(k, 64))
	q.setLimit()
	ring := []h3.Cell{c0}
	ringCells := 0
	for r := 0; ; r++ {
		for _, c := range ring {
			g, err := x.geoms.get(c)
			if err != nil {
				continue
			}
			if q.prune(g.lowerBoundM(q.p)) {
				continue
			}
			s := x.cellShard(c)
			s.mu.RLock()
			if b := s.cells[c]; b != nil {
				q.scan(b)
			}
			s.mu.RUnlock()
		}
		next, err := h3.GridRing(c0, r+1)
		if err != nil {
			return x.fullScan(q)
		}
		ringCells += len(next)
		// A ring cell costs a cgo-built ring slot and a geometry lookup,
		// about ringCost times a bucket in the full scan.
		if int64(ringCells)*x.ringCost > x.occupied.Load() {
			return x.fullScan(q)
		}
		bound := math.Inf(1)
		for _, c := range next {
			if c == 0 {
				continue // pentagon distortion leaves holes
			}
			g, err := x.geoms.get(c)
			if err != nil {
				return x.fullScan(q)
			}
			bound = min(bound, g.lowerBoundM(q.p))
		}
		if q.prune(bound) {
			return q.top
		}
		ring = next
	}
}

// fullScan answers q by visiting every occupied cell.
func (x *Index) fullScan(q query) []Hit {
	q.top = q.top[:0]
	q.setLimit()
	for i := range x.cells {
		s := &x.cells[i]
		s.mu.RLock()
		for _, b := range s.cells {
			if !q.prune(b.geom.lowerBoundM(q.p)) {
				q.scan(b)
			}
		}
		s.mu.RUnlock()
	}
	return q.top
}

// compiledFilter is a Filter in the form the scan loop tests quickly.
type compiledFilter struct {
	statuses uint8 // bit per Status; 0 means any
	flags    uint8 // entry flags required
	minSpare int32
	vehicles []string
	exclude  map[string]struct{}
}

func compile(f Filter) compiledFilter {
	cf := compiledFilter{vehicles: f.Vehicles, exclude: f.Exclude}
	for _, s := range f.Statuses {
		if s < numStatuses {
			cf.statuses |= 1 << s
		} else {
			cf.statuses |= 1 << 7 // matches nothing, but is not "any"
		}
	}
	if f.Online {
		cf.flags |= flagOnline
	}
	if f.OnShift {
		cf.flags |= flagOnShift
	}
	cf.minSpare = int32(max(min(f.MinSpare, math.MaxInt32), math.MinInt32))
	return cf
}

type query struct {
	p      vec3
	f      compiledFilter
	k      int
	radius float64
	top    []Hit // sorted by (DistanceM, ID), at most k
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

// scan offers the couriers of b to q. The caller holds b's shard read lock.
func (q *query) scan(b *bucket) {
	for i := range b.entries {
		e := &b.entries[i]
		if q.f.statuses != 0 && q.f.statuses&(1<<e.status) == 0 ||
			e.flags&q.f.flags != q.f.flags || e.spare < q.f.minSpare {
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
		full := len(q.top) == q.k
		if full {
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
		q.add(Hit{Courier: e.c.snapshot(), DistanceM: d})
	}
}

func hitLess(a, b *Hit) bool {
	return a.DistanceM < b.DistanceM || a.DistanceM == b.DistanceM && a.ID < b.ID
}

// add inserts h in order, keeping at most k. A courier already present (it
// moved between cells during the search) keeps its nearer sighting.
func (q *query) add(h Hit) {
	for i := range q.top {
		if q.top[i].ID == h.ID {
			if !hitLess(&h, &q.top[i]) {
				return
			}
			q.top = slices.Delete(q.top, i, i+1)
			break
		}
	}
	i, _ := slices.BinarySearchFunc(q.top, &h, func(a Hit, b *Hit) int {
		if hitLess(&a, b) {
			return -1
		}
		return 1
	})
	if len(q.top) == q.k {
		if i == q.k {
			return
		}
		q.top = q.top[:q.k-1]
	}
	q.top = slices.Insert(q.top, i, h)
	if len(q.top) == q.k {
		q.setLimit()
	}
}
