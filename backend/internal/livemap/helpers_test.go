package livemap

import (
	"cmp"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/shared/wire"
)

// Casablanca, as the brief bounds it.
const (
	casaMinLat, casaMaxLat = 33.45, 33.65
	casaMinLng, casaMaxLng = -7.75, -7.45
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

var vehicles = []string{"scooter", "bike", "car", "foot"}

func randCasa(rng *rand.Rand) (lat, lng float64) {
	return casaMinLat + rng.Float64()*(casaMaxLat-casaMinLat), casaMinLng + rng.Float64()*(casaMaxLng-casaMinLng)
}

// fixAt builds a fix with the given seq at a point.
func fixAt(seq uint64, lat, lng float64) wire.Fix {
	return wire.Fix{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Lat: lat, Lng: lng,
		Accuracy: 5, Speed: 3, Heading: 90, Battery: 80}
}

func mustUpdate(tb testing.TB, x *Index, id string, f wire.Fix) UpdateResult {
	tb.Helper()
	res, err := x.Update(id, f, f.Time)
	if err != nil {
		tb.Fatalf("update %s: %v", id, err)
	}
	return res
}

// borderPoint returns a point on the boundary of a random res-9 cell near
// (lat, lng): a vertex or a point along an edge.
func borderPoint(tb testing.TB, rng *rand.Rand, lat, lng float64) (float64, float64) {
	tb.Helper()
	c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := h3.CellToBoundary(c)
	if err != nil {
		tb.Fatal(err)
	}
	i := rng.IntN(len(b))
	a, z := b[i], b[(i+1)%len(b)]
	t := 0.0
	if rng.IntN(2) == 0 {
		t = rng.Float64()
	}
	return a.Lat + t*(z.Lat-a.Lat), a.Lng + t*(z.Lng-a.Lng)
}

type fleetKind int

const (
	fleetUniform fleetKind = iota
	fleetClustered
	fleetBorders
)

// fillFleet adds n couriers with random statuses, vehicles, loads and flags.
func fillFleet(tb testing.TB, rng *rand.Rand, x *Index, n int, kind fleetKind) {
	tb.Helper()
	centers := make([][2]float64, 1+rng.IntN(4))
	for i := range centers {
		centers[i][0], centers[i][1] = randCasa(rng)
	}
	for i := range n {
		lat, lng := randCasa(rng)
		switch kind {
		case fleetClustered:
			c := centers[rng.IntN(len(centers))]
			lat, lng = c[0]+rng.NormFloat64()*0.002, c[1]+rng.NormFloat64()*0.002
		case fleetBorders:
			lat, lng = borderPoint(tb, rng, lat, lng)
		}
		if kind == fleetClustered && rng.IntN(10) == 0 {
			lat, lng = centers[0][0], centers[0][1] // exact duplicates: ties by id
		}
		id := fmt.Sprintf("c%05d", i)
		mustUpdate(tb, x, id, fixAt(1, lat, lng))
		if err := x.SetStatus(id, Status(rng.IntN(int(numStatuses))), rng.IntN(3)); err != nil {
			tb.Fatal(err)
		}
		if err := x.SetProfile(id, vehicles[rng.IntN(len(vehicles))], 1+rng.IntN(3)); err != nil {
			tb.Fatal(err)
		}
		x.SetShift(id, rng.IntN(4) != 0)
		if rng.IntN(5) == 0 {
			x.SetOnline(id, false, t0)
		}
	}
}

// matches is the Filter semantics, written out independently of compile.
func matches(f Filter, c Courier) bool {
	if !c.HasFix {
		return false
	}
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, c.Status) {
		return false
	}
	if len(f.Vehicles) > 0 && !slices.Contains(f.Vehicles, c.Vehicle) {
		return false
	}
	if c.Spare() < f.MinSpare || f.OnShift && !c.OnShift || f.Online && !c.Online {
		return false
	}
	_, excluded := f.Exclude[c.ID]
	return !excluded
}

// bruteNearest scans every courier.
func bruteNearest(x *Index, lat, lng float64, f Filter, k int, radiusM float64) []Hit {
	var all []Hit
	for _, c := range x.Snapshot() {
		if !matches(f, c) {
			continue
		}
		d := geo.DistanceLatLngM(lat, lng, c.Fix.Lat, c.Fix.Lng)
		if d <= radiusM {
			all = append(all, Hit{Courier: c, DistanceM: d})
		}
	}
	slices.SortFunc(all, func(a, b Hit) int {
		return cmp.Or(cmp.Compare(a.DistanceM, b.DistanceM), cmp.Compare(a.ID, b.ID))
	})
	if len(all) > k {
		all = all[:k]
	}
	return all
}

func randFilter(rng *rand.Rand, ids int) Filter {
	var f Filter
	if rng.IntN(3) != 0 {
		f.Statuses = []Status{StatusAvailable}
		if rng.IntN(3) == 0 {
			f.Statuses = append(f.Statuses, StatusBusy)
		}
	}
	if rng.IntN(3) == 0 {
		f.Vehicles = []string{vehicles[rng.IntN(len(vehicles))], vehicles[rng.IntN(len(vehicles))]}
	}
	f.MinSpare = rng.IntN(3)
	f.OnShift = rng.IntN(2) == 0
	f.Online = rng.IntN(2) == 0
	if rng.IntN(3) == 0 {
		f.Exclude = map[string]struct{}{}
		for range 1 + rng.IntN(20) {
			f.Exclude[fmt.Sprintf("c%05d", rng.IntN(ids))] = struct{}{}
		}
	}
	return f
}

func hitsEqual(a, b []Hit) bool {
	return slices.EqualFunc(a, b, func(p, q Hit) bool {
		return p.ID == q.ID && p.DistanceM == q.DistanceM && p.Courier == q.Courier
	})
}

func formatHits(hs []Hit) string {
	s := ""
	for _, h := range hs {
		s += fmt.Sprintf(" %s@%.3f", h.ID, h.DistanceM)
	}
	return "[" + s + " ]"
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func sinCos(a float64, sin bool) float64 {
	if sin {
		return math.Sin(a)
	}
	return math.Cos(a)
}
