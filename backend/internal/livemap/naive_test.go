package livemap

import (
	"cmp"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"slices"
	"sync"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/shared/wire"
)

// naiveIndex is the reference the live index is benchmarked against, the
// obvious design (DESIGN.md measured one like it): a map from res-9 H3 cell
// to couriers under one RWMutex; Nearest expands H3 rings (GridDisk, cgo)
// until k matches are found plus one more ring, then ranks by great-circle
// distance. It is not exact at the edge of its last ring: a reference for
// cost, not for answers.
type naiveIndex struct {
	mu    sync.RWMutex
	byID  map[string]*naiveCourier
	cells map[h3.Cell]map[string]*naiveCourier
}

type naiveCourier struct {
	c    Courier
	cell h3.Cell
}

// newNaive copies the couriers of x into a naive index.
func newNaive(x *Index) *naiveIndex {
	n := &naiveIndex{byID: map[string]*naiveCourier{}, cells: map[h3.Cell]map[string]*naiveCourier{}}
	for _, c := range x.Snapshot() {
		nc := &naiveCourier{c: c, cell: c.Cell9}
		n.byID[c.ID] = nc
		if n.cells[nc.cell] == nil {
			n.cells[nc.cell] = map[string]*naiveCourier{}
		}
		n.cells[nc.cell][c.ID] = nc
	}
	return n
}

func (n *naiveIndex) update(id string, f wire.Fix) error {
	cell, err := h3.LatLngToCell(h3.LatLng{Lat: f.Lat, Lng: f.Lng}, DispatchRes)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	nc := n.byID[id]
	if nc == nil {
		nc = &naiveCourier{c: Courier{ID: id, Status: StatusAvailable, Capacity: 1, Online: true}}
		n.byID[id] = nc
	}
	if nc.cell != cell {
		delete(n.cells[nc.cell], id)
		if n.cells[cell] == nil {
			n.cells[cell] = map[string]*naiveCourier{}
		}
		n.cells[cell][id] = nc
		nc.cell = cell
	}
	if f.Seq > nc.c.Fix.Seq {
		nc.c.Fix, nc.c.HasFix = f, true
	}
	return nil
}

func (n *naiveIndex) nearest(lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	c0, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
	if err != nil {
		return nil
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	var hits []Hit
	extra := -1
	// A res-9 ring is about 300 m further out than the last.
	for r := 0; float64(r-1)*300 <= radiusM && extra != 0; r++ {
		ring, err := h3.GridRing(c0, r)
		if err != nil {
			return nil
		}
		for _, cell := range ring {
			for _, nc := range n.cells[cell] {
				if !matches(f, nc.c) {
					continue
				}
				if d := geo.DistanceLatLngM(lat, lng, nc.c.Fix.Lat, nc.c.Fix.Lng); d <= radiusM {
					hits = append(hits, Hit{Courier: nc.c, DistanceM: d})
				}
			}
		}
		if extra > 0 {
			extra--
		} else if extra < 0 && len(hits) >= k {
			extra = 1
		}
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		return cmp.Or(cmp.Compare(a.DistanceM, b.DistanceM), cmp.Compare(a.ID, b.ID))
	})
	return hits[:min(k, len(hits))]
}
