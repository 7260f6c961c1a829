package livemap

import (
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
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
						if st.ringCost == 0 && radius > 3000 {
							radius = 3000 // rings alone to 50 km: ~60,000 cells a query, slow and no more telling
						}
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
			got := geo.DistanceLatLngM(tt.lat1, tt.lng1, tt.lat2, tt.lng2)
			want := h3.GreatCircleDistanceM(h3.LatLng{Lat: tt.lat1, Lng: tt.lng1}, h3.LatLng{Lat: tt.lat2, Lng: tt.lng2})
			if diff := got - want; diff > 1e-6*want+1e-6 || diff < -(1e-6*want+1e-6) {
				t.Fatalf("got %.6f m, h3 says %.6f m", got, want)
			}
		})
	}
}

// TestGridBoundsHold checks the bounds Nearest prunes with: no point of a
// block of grid cells is nearer to a query point than cellLB says, for
// blocks near and far, across the antimeridian and near the poles.
func TestGridBoundsHold(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	type area struct{ minLat, maxLat, minLng, maxLng float64 }
	areas := []area{
		{casaMinLat, casaMaxLat, casaMinLng, casaMaxLng},
		{-10, 10, 175, 185}, // across the antimeridian (lng wrapped below)
		{80, 90, -180, 180},
		{-90, -80, -180, 180},
	}
	tight := 0
	for i := range 200000 {
		a := areas[i%len(areas)]
		lat := a.minLat + rng.Float64()*(a.maxLat-a.minLat)
		lng := a.minLng + rng.Float64()*(a.maxLng-a.minLng)
		if lng > 180 {
			lng -= 360
		}
		row, col := gridCell(lat, lng)
		// A block of cells around a nearby or far row and column.
		spread := []int32{1, 8, 200, 20000}[rng.IntN(4)]
		r0 := row + int32(rng.IntN(int(2*spread+1))) - spread
		c0 := col + int32(rng.IntN(int(2*spread+1))) - spread
		r1, c1 := r0+int32(rng.IntN(3)), c0+int32(rng.IntN(3))
		r0, r1 = max(r0, 0), min(r1, gridRows-1)
		if r0 > r1 {
			continue
		}
		// A point of the block: corners and edges as often as insides.
		pick := func(lo, hi int32) float64 {
			switch rng.IntN(3) {
			case 0:
				return float64(lo)
			case 1:
				return float64(hi + 1)
			}
			return float64(lo) + rng.Float64()*float64(hi+1-lo)
		}
		plat := pick(r0, r1)*degPerCell - 90
		plng := math.Mod(pick(c0, c1)*degPerCell-180+540, 360) - 180
		qlat := a.minLat + rng.Float64()*(a.maxLat-a.minLat)
		qlng := math.Mod(a.minLng+rng.Float64()*(a.maxLng-a.minLng)+540, 360) - 180
		b := newBounds(qlat, qlng)
		lb := b.cellLB(r0, r1, c0, c1)
		d := geo.DistanceLatLngM(qlat, qlng, plat, plng)
		if d < lb {
			t.Fatalf("query %v,%v: point %v,%v of rows %d-%d cols %d-%d at %.4f m, bound %.4f m",
				qlat, qlng, plat, plng, r0, r1, c0, c1, d, lb)
		}
		if lb > 0.9*d {
			tight++
		}
	}
	if tight < 10000 {
		t.Fatalf("bounds within 10%% of a block point's distance only %d times: too weak to prune", tight)
	}
}

// TestStepAgreesWithH3 follows couriers moving a few metres to a few
// hundred metres at a time and checks that the cell found through the
// neighbour geometry is H3's.
func TestStepAgreesWithH3(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	gc := newGeomCache(1 << 12)
	fast := 0
	for range 200 {
		lat, lng := randCasa(rng)
		var cur *cellGeom
		for range 100 {
			step := []float64{2e-5, 2e-4, 2e-3}[rng.IntN(3)]
			lat += (rng.Float64() - 0.5) * step
			lng += (rng.Float64() - 0.5) * step
			if rng.IntN(10) == 0 {
				lat, lng = borderPoint(t, rng, lat, lng)
			}
			g, err := gc.step(cur, vecOf(lat, lng), lat, lng)
			if err != nil {
				t.Fatal(err)
			}
			want, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
			if err != nil {
				t.Fatal(err)
			}
			p8, _ := want.Parent(DensityRes)
			p7, _ := want.Parent(CityRes)
			if g.cell != want || g.parent8 != p8 || g.city7 != p7 {
				t.Fatalf("%v,%v: step says %v (%v %v), H3 %v (%v %v)", lat, lng, g.cell, g.parent8, g.city7, want, p8, p7)
			}
			if cur != nil && g != cur && cur.contains(vecOf(lat, lng)) {
				t.Fatal("left a cell that contains the point")
			}
			if cur != nil {
				fast++
			}
			cur = g
		}
	}
	if fast == 0 {
		t.Fatal("never stepped from a known cell")
	}
}

// TestNearestEdgesOfTheGrid is the brute-force comparison where the grid
// wraps or degenerates: across the antimeridian and around the poles.
func TestNearestEdgesOfTheGrid(t *testing.T) {
	areas := []struct {
		name             string
		lat0, lng0, span float64
	}{
		{"antimeridian", -17, 180, 0.05},
		{"north pole", 89.97, 0, 0.05},
		{"south pole", -89.97, 0, 0.05},
	}
	for _, a := range areas {
		for _, ringCost := range []int64{0, 1, 1 << 40} {
			if ringCost == 0 && a.lat0*a.lat0 > 80*80 {
				// Rings alone near a pole, where a column is centimetres
				// wide, would visit millions of cells: the default falls
				// back to the scan long before.
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", a.name, ringCost), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, uint64(ringCost)))
				x := New()
				x.ringCost = ringCost
				at := func() (float64, float64) {
					lat := min(max(a.lat0+(rng.Float64()-0.5)*a.span, -90), 90)
					lng := a.lng0 + (rng.Float64()-0.5)*a.span*40
					return lat, math.Mod(lng+540, 360) - 180
				}
				for i := range 300 {
					lat, lng := at()
					mustUpdate(t, x, fmt.Sprintf("c%05d", i), fixAt(1, lat, lng))
				}
				for i := range 200 {
					lat, lng := at()
					k := []int{1, 5, 50}[i%3]
					radius := []float64{300, 3000, 30000}[i%3]
					got := x.Nearest(lat, lng, Filter{}, k, radius)
					want := bruteNearest(x, lat, lng, Filter{}, k, radius)
					if !hitsEqual(got, want) {
						t.Fatalf("query %d at %v,%v k=%d r=%v:\n got %s\nwant %s", i, lat, lng, k, radius, formatHits(got), formatHits(want))
					}
				}
			})
		}
	}
}
