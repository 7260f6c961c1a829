package livemap

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

// TestNearestMatchesBruteForce is the property test of the ring search:
// over random fleets (uniform, clustered with exact duplicates, all on cell
// borders), random filters, k and radii, Nearest equals a brute-force scan,
// bit for bit, whichever search strategy the index picks.
func TestNearestMatchesBruteForce(t *testing.T) {
	strategies := []struct {
		name     string
		ringCost int64
	}{
		{"rings", 0},          // never falls back to the full scan
		{"adaptive", 10},      // the default
		{"fullscan", 1 << 40}, // always the full scan
	}
	kinds := []struct {
		name string
		kind fleetKind
		n    int
	}{
		{"uniform", fleetUniform, 3000},
		{"clustered", fleetClustered, 1500},
		{"borders", fleetBorders, 1500},
		{"sparse", fleetUniform, 40},
	}
	for _, kd := range kinds {
		for seed := uint64(1); seed <= 3; seed++ {
			rng := rand.New(rand.NewPCG(seed, uint64(kd.kind)))
			x := New()
			fillFleet(t, rng, x, kd.n, kd.kind)
			for _, st := range strategies {
				t.Run(fmt.Sprintf("%s/%d/%s", kd.name, seed, st.name), func(t *testing.T) {
					x.ringCost = st.ringCost
					qrng := rand.New(rand.NewPCG(seed, 99))
					for i := range 150 {
						lat, lng := randCasa(qrng)
						if i%3 == 0 {
							lat, lng = borderPoint(t, qrng, lat, lng)
						}
						if kd.kind == fleetClustered && i%2 == 0 {
							h := x.Snapshot()[qrng.IntN(x.Len())]
							lat, lng = h.Fix.Lat, h.Fix.Lng // on top of a courier
						}
						f := randFilter(qrng, kd.n)
						k := []int{1, 5, 20, 10000}[qrng.IntN(4)]
						radius := []float64{0, 150, 800, 3000, 50000}[qrng.IntN(5)]
						got := x.Nearest(lat, lng, f, k, radius)
						want := bruteNearest(x, lat, lng, f, k, radius)
						if !hitsEqual(got, want) {
							t.Fatalf("query %d at %v,%v k=%d r=%v filter %+v:\n got %s\nwant %s",
								i, lat, lng, k, radius, f, formatHits(got), formatHits(want))
						}
					}
				})
			}
		}
	}
}

func TestNearestArgs(t *testing.T) {
	x := New()
	mustUpdate(t, x, "a", fixAt(1, 33.57, -7.59))
	tests := []struct {
		name      string
		lat, lng  float64
		k         int
		radius    float64
		wantCount int
	}{
		{"ok", 33.57, -7.59, 5, 100, 1},
		{"k zero", 33.57, -7.59, 0, 100, 0},
		{"negative radius", 33.57, -7.59, 5, -1, 0},
		{"radius zero at the courier", 33.57, -7.59, 5, 0, 1},
		{"radius too small", 33.571, -7.59, 5, 100, 0},
		{"lat out of range", 91, -7.59, 5, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := x.Nearest(tt.lat, tt.lng, Filter{}, tt.k, tt.radius); len(got) != tt.wantCount {
				t.Fatalf("got %d hits, want %d", len(got), tt.wantCount)
			}
		})
	}
}

// TestContainsAgreesWithH3 checks the fast containment test against H3 over
// points inside, on and just outside cell borders: whenever it says
// "inside", H3 must agree; and for points spread over a cell it must answer
// without H3 nearly always (else the fast path is dead).
func TestContainsAgreesWithH3(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	gc := newGeomCache(1 << 12)
	fast, total := 0, 0
	for range 20000 {
		lat, lng := randCasa(rng)
		border := rng.IntN(2) == 0
		if border {
			// On or within a few centimetres of a border, either side.
			lat, lng = borderPoint(t, rng, lat, lng)
			lat += (rng.Float64() - 0.5) * 2e-6
			lng += (rng.Float64() - 0.5) * 2e-6
		}
		// Ask about the cell of a nearby point, so many points are outside.
		near := h3.LatLng{Lat: lat + (rng.Float64()-0.5)*4e-3, Lng: lng + (rng.Float64()-0.5)*4e-3}
		c, err := h3.LatLngToCell(near, DispatchRes)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gc.get(c)
		if err != nil {
			t.Fatal(err)
		}
		truth, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
		if err != nil {
			t.Fatal(err)
		}
		if g.contains(vecOf(lat, lng)) {
			if truth != c {
				t.Fatalf("%v,%v: fast test says inside %v, H3 says %v", lat, lng, c, truth)
			}
			if !border {
				fast++
			}
		}
		if truth == c && !border {
			total++
		}
	}
	if total == 0 || float64(fast)/float64(total) < 0.99 {
		t.Fatalf("fast path accepted %d of %d inside points", fast, total)
	}
}

// TestCircumradiusBoundsCell checks the bound Nearest prunes with: no point
// of a cell is farther from its centre than radiusM.
func TestCircumradiusBoundsCell(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	gc := newGeomCache(1 << 12)
	for range 20000 {
		lat, lng := randCasa(rng)
		if rng.IntN(2) == 0 {
			lat, lng = borderPoint(t, rng, lat, lng)
		}
		c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gc.get(c)
		if err != nil {
			t.Fatal(err)
		}
		if d := distM(g.center, vecOf(lat, lng)); d > g.radiusM {
			t.Fatalf("%v,%v is %.3f m from the centre of %v, bound %.3f m", lat, lng, d, c, g.radiusM)
		}
	}
}

func TestDistanceM(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lng1, lat2, lng2 float64
	}{
		{"same point", 33.5, -7.6, 33.5, -7.6},
		{"100 m north", 33.5, -7.6, 33.5009, -7.6},
		{"across the city", 33.45, -7.75, 33.65, -7.45},
		{"Casablanca to Tanger", 33.5731, -7.5898, 35.7595, -5.834},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceM(tt.lat1, tt.lng1, tt.lat2, tt.lng2)
			want := h3.GreatCircleDistanceM(h3.LatLng{Lat: tt.lat1, Lng: tt.lng1}, h3.LatLng{Lat: tt.lat2, Lng: tt.lng2})
			if diff := got - want; diff > 1e-6*want+1e-6 || diff < -(1e-6*want+1e-6) {
				t.Fatalf("got %.6f m, h3 says %.6f m", got, want)
			}
		})
	}
}

// TestLowerBoundHolds checks the bound Nearest prunes with: no point of a
// cell is nearer to a query point than the cell's lowerBoundM.
func TestLowerBoundHolds(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	gc := newGeomCache(1 << 12)
	for range 20000 {
		lat, lng := randCasa(rng)
		if rng.IntN(2) == 0 {
			lat, lng = borderPoint(t, rng, lat, lng)
		}
		c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gc.get(c)
		if err != nil {
			t.Fatal(err)
		}
		q := vecOf(lat+(rng.Float64()-0.5)*0.02, lng+(rng.Float64()-0.5)*0.02)
		if d, lb := distM(q, vecOf(lat, lng)), g.lowerBoundM(q); d < lb {
			t.Fatalf("point of %v at %.3f m from the query, bound %.3f m", c, d, lb)
		}
	}
}
