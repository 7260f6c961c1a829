package livemap

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/backend/internal/geo"
)

// TestNearestCandidateMovedDuringQuery drives the end of a query by hand: a
// courier among the final candidates moves after the search saw it. The
// query must not report the old position with the new snapshot: it searches
// again, and on its last attempt it reports the courier where it is now.
func TestNearestCandidateMovedDuringQuery(t *testing.T) {
	x := New()
	mustUpdate(t, x, "a", fixAt(1, 33.5700, -7.5900))
	mustUpdate(t, x, "b", fixAt(1, 33.5710, -7.5900))
	lat, lng := 33.5700, -7.5901

	var q query
	q.init(x, lat, lng, Filter{}, 2, 5000)
	q.reset()
	x.search(&q)
	if q.n != 2 {
		t.Fatalf("search found %d candidates, want 2", q.n)
	}
	mustUpdate(t, x, "a", fixAt(2, 33.5750, -7.5900)) // same tile, 550 m north

	if _, ok := x.finish(&q, nil, false); ok {
		t.Fatal("finish accepted a candidate that moved since the search")
	}
	got, ok := x.finish(&q, nil, true)
	if !ok {
		t.Fatal("the last attempt must answer")
	}
	want := bruteNearest(x, lat, lng, Filter{}, 2, 5000)
	if !hitsEqual(got, want) {
		t.Fatalf("last attempt:\n got %s\nwant %s", formatHits(got), formatHits(want))
	}

	// A filter the moved courier no longer matches drops it on the last attempt.
	q.init(x, lat, lng, Filter{Statuses: []Status{StatusAvailable}}, 2, 5000)
	q.reset()
	x.search(&q)
	if err := x.SetStatus("b", StatusBusy, 1); err != nil {
		t.Fatal(err)
	}
	got, _ = x.finish(&q, nil, true)
	if len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("after b turned busy: got %s, want only a", formatHits(got))
	}
	// And the whole query agrees with the brute force.
	f := Filter{Statuses: []Status{StatusAvailable}}
	if got, want := x.Nearest(lat, lng, f, 2, 5000), bruteNearest(x, lat, lng, f, 2, 5000); !hitsEqual(got, want) {
		t.Fatalf("Nearest:\n got %s\nwant %s", formatHits(got), formatHits(want))
	}
}

// TestNearestConcurrentWithUpdates runs queries while couriers move, change
// status and vanish (run with -race). Every answer must be consistent:
// nearest first, within the radius, each hit's distance that of its own
// snapshot's fix, and the filter true of the snapshot.
func TestNearestConcurrentWithUpdates(t *testing.T) {
	x := New()
	rng := newRand(3)
	const n = 600
	for i := range n {
		lat, lng := randCasa(rng)
		mustUpdate(t, x, fmt.Sprintf("c%05d", i), fixAt(1, lat, lng))
		x.SetShift(fmt.Sprintf("c%05d", i), true)
	}
	f := Filter{Statuses: []Status{StatusAvailable}, OnShift: true, MinSpare: 1}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := newRand(uint64(10 + w))
			for i := range 3000 {
				id := fmt.Sprintf("c%05d", rng.IntN(n))
				switch i % 7 {
				case 0:
					_ = x.SetStatus(id, Status(rng.IntN(int(numStatuses))), rng.IntN(2))
				case 1:
					x.Remove(id)
				default:
					lat, lng := randCasa(rng)
					_, _ = x.Update(id, fixAt(uint64(2+i), lat, lng), t0)
				}
			}
		}()
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := newRand(uint64(20 + r))
			buf := make([]Hit, 0, 8)
			for range 1500 {
				lat, lng := randCasa(rng)
				buf = x.NearestAppend(buf, lat, lng, f, 8, 3000)
				for j, h := range buf {
					if j > 0 && hitLess(&h, &buf[j-1]) {
						t.Errorf("hits out of order: %s", formatHits(buf))
					}
					if h.DistanceM > 3000 || !matches(f, h.Courier) {
						t.Errorf("hit %s@%.1f does not match the query (%+v)", h.ID, h.DistanceM, h.Courier)
					}
					if d := geo.DistanceLatLngM(lat, lng, h.Fix.Lat, h.Fix.Lng); d != h.DistanceM {
						t.Errorf("hit %s: distance %.3f, its fix is at %.3f", h.ID, h.DistanceM, d)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func hitLess(a, b *Hit) bool {
	return a.DistanceM < b.DistanceM || a.DistanceM == b.DistanceM && a.ID < b.ID
}

// TestCourierRecordLayout holds the record and the cell geometry at 256
// bytes: the size class whose objects are cache-line aligned, the layout
// Update is written for.
func TestCourierRecordLayout(t *testing.T) {
	if n := unsafe.Sizeof(courier{}); n != 256 {
		t.Fatalf("courier record is %d bytes, want 256 (see the comment on courier)", n)
	}
	if off := unsafe.Offsetof(courier{}.fix); off != 64 {
		t.Errorf("fix at offset %d, want 64 (line 1)", off)
	}
	// The addresses an update goes on to share line 0 with the id.
	for name, off := range map[string]uintptr{"t": unsafe.Offsetof(courier{}.t), "ep": unsafe.Offsetof(courier{}.ep),
		"geom": unsafe.Offsetof(courier{}.geom), "idBuf": unsafe.Offsetof(courier{}.idBuf)} {
		if off >= 64 {
			t.Errorf("%s at offset %d, want line 0", name, off)
		}
	}
	if n := unsafe.Sizeof(cellGeom{}); n != 256 {
		t.Errorf("cell geometry is %d bytes, want 256 (see the comment on cellGeom)", n)
	}
}

// TestH3ParentAgreesWithH3 checks the bit arithmetic of h3Parent against
// H3 itself over cells of the test area and the whole globe.
func TestH3ParentAgreesWithH3(t *testing.T) {
	rng := newRand(5)
	for i := range 2000 {
		lat, lng := randCasa(rng)
		if i%2 == 0 {
			lat, lng = rng.Float64()*180-90, rng.Float64()*360-180
		}
		c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range []int{DensityRes, CityRes, 0, DispatchRes} {
			want, err := c.Parent(res)
			if err != nil {
				t.Fatal(err)
			}
			if got := h3Parent(c, res); got != want {
				t.Fatalf("parent of %v at %d: got %v, want %v", c, res, got, want)
			}
		}
	}
}
