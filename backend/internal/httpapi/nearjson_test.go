package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/shared/wire"
)

// TestNearJSONMatchesEncodingJSON: the hand-written near= answer is byte
// for byte what encoding/json makes of the same couriers.
func TestNearJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	odd := []string{"", "scooter", `a"b\c`, "<b>&", "tab\there\nnl\x01", "درّاجة", "vélo", "\xff\xfe"}
	for i := range 2000 {
		var hits []livemap.Hit
		for j := range rng.IntN(6) {
			c := livemap.Courier{ID: fmt.Sprintf("c-%d_%d", i, j), Status: livemap.Status(rng.IntN(4)),
				Load: rng.IntN(3), Capacity: rng.IntN(4), Vehicle: odd[rng.IntN(len(odd))],
				OnShift: rng.IntN(2) == 0, Online: rng.IntN(2) == 0}
			if rng.IntN(5) != 0 {
				lat := []float64{33.5 + rng.Float64()/10, -1e-7, 0, 89.999999, 1e-6}[rng.IntN(5)]
				lng := -7.6 + rng.Float64()/10
				c.HasFix = true
				c.Fix = wire.Fix{Seq: 1, Time: time.Unix(1.7e9+rng.Int64N(1e6), rng.Int64N(1e9)), Lat: lat, Lng: lng,
					Battery: rng.IntN(102) - 1}
				c.Cell9, _ = h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, 9)
			}
			hits = append(hits, livemap.Hit{Courier: c, DistanceM: []float64{0, rng.Float64() * 5000, 1e-9, 123456.789}[rng.IntN(4)]})
		}
		names := map[string]string{}
		for _, h := range hits {
			names[h.ID] = odd[rng.IntN(len(odd))]
		}
		tr := Tracking{Name: func(id string) string { return names[id] }}
		out := []courierJSON{}
		for _, h := range hits {
			out = append(out, tr.named(courierOut(h.Courier, h.DistanceM, true)))
		}
		want, err := json.Marshal(map[string]any{"couriers": out})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCouriersJSON(nil, hits, tr.namesOf(hits, &nearScratch{})); string(got) != string(want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestDecimetresMatchAppendFloat: the distance's short way writes what the
// general one writes, at every magnitude (and at the edges it leaves to it).
func TestDecimetresMatchAppendFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	gives := []float64{0, 0.04, 0.05, 0.06, 0.95, 1, 9.95, 10, 99.99, 1e14 - 0.04, 1e14, 1e15, 1e16, -1, -0.04}
	for range 200_000 {
		gives = append(gives, math.Pow(10, rng.Float64()*20-2)*rng.Float64())
	}
	for _, m := range gives {
		want := appendJSONFloat(nil, math.Round(m*10)/10)
		if got := appendDecimetres(nil, m); string(got) != string(want) {
			t.Fatalf("%v m: got %s, want %s", m, got, want)
		}
	}
}

func BenchmarkNearJSON(b *testing.B) {
	hits := make([]livemap.Hit, 5)
	for i := range hits {
		hits[i] = livemap.Hit{Courier: livemap.Courier{ID: fmt.Sprintf("courier-%06d", i), HasFix: true, Online: true, OnShift: true,
			Status: livemap.StatusAvailable, Capacity: 2, Vehicle: "scooter",
			Fix: wire.Fix{Seq: 9, Time: time.Now(), Lat: 33.57, Lng: -7.59, Battery: 80}, Cell9: 0x891f1d48927ffff}, DistanceM: 123.4}
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendCouriersJSON(buf[:0], hits, nil)
	}
}

// TestNearJSONPartsMatchTheGeneralWay: the cell, time and status writers
// of the near= answer write what strconv, time and encoding/json write, at
// the edges too (zero, all bits, years outside 0-9999, other zones, every
// status value).
func TestNearJSONPartsMatchTheGeneralWay(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, v := range append([]uint64{0, 1, 15, 16, math.MaxUint64, 0x891f1d48927ffff}, rng.Uint64(), rng.Uint64()>>7) {
		if got, want := string(appendHex([]byte("x"), v)), "x"+strconv.FormatUint(v, 16); got != want {
			t.Fatalf("hex %d: got %s, want %s", v, got, want)
		}
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 3600+1800), time.FixedZone("y", -11*3600), time.FixedZone("s", -(3*3600 + 25*60 + 7)), time.Local}
	if loc, err := time.LoadLocation("Africa/Casablanca"); err == nil {
		zones = append(zones, loc)
	}
	times := []time.Time{{}, time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(999, 2, 3, 4, 5, 6, 7, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond),
		time.Date(2000, 2, 29, 23, 59, 59, 0, time.UTC), time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC)}
	for range 20_000 {
		times = append(times, time.Unix(rng.Int64N(1<<39)-1<<38, rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))]),
			time.Unix(1.7e9+rng.Int64N(1e9), rng.Int64N(1e9)))
	}
	for _, tm := range times {
		if got, want := string(appendRFC3339([]byte("x"), tm)), "x"+tm.UTC().Format(time.RFC3339); got != want {
			t.Fatalf("time %v: got %s, want %s", tm, got, want)
		}
		if got, want := string(appendRFC3339Nano([]byte("x"), tm)), "x"+tm.Format(time.RFC3339Nano); got != want {
			t.Fatalf("time %v: got %s, want %s (nano)", tm, got, want)
		}
		if tm := tm.Truncate(time.Second); string(appendRFC3339Nano(nil, tm)) != tm.Format(time.RFC3339Nano) {
			t.Fatalf("time %v: got %s, want %s (nano, whole second)", tm, appendRFC3339Nano(nil, tm), tm.Format(time.RFC3339Nano))
		}
	}
	for s := range 256 {
		c := livemap.Courier{ID: "c", Status: livemap.Status(s)}
		want, err := json.Marshal(courierOut(c, 0, false))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCourierJSON(nil, &c, "", 0, false); string(got) != string(want) {
			t.Fatalf("status %d: got %s, want %s", s, got, want)
		}
	}
}

// TestJSONFloatSevenDecimals: the short way for numbers of at most seven
// decimals writes what strconv's shortest search writes, at every
// magnitude and at the edges of the range it takes.
func TestJSONFloatSevenDecimals(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	gives := []float64{0, math.Copysign(0, -1), 1e-6, -1e-6, 9e-7, 1e-7, 0.5, 0.999999, 1, 10, 33.57, -7.59, 89.999999, -180,
		99_999_999.999999, 1e8, 1e8 + 0.5, 9_999_999.9999999, 1e7, 1e7 + 0.5, 33.5731104, -7.5898765, 0.0000001, 123456.000001, 0.000123, 1e21, 5e-324, math.MaxFloat64}
	for range 300_000 {
		scale := math.Pow(10, float64(rng.IntN(15)))
		k := float64(rng.Int64N(int64(scale)) + 1)
		if rng.IntN(2) == 0 {
			k = -k
		}
		gives = append(gives, k/1e6, k/1e7, k/1e8, (33.45+rng.Float64()*0.2)*float64(1-2*rng.IntN(2)), math.Pow(10, rng.Float64()*30-10))
	}
	for _, f := range gives {
		if got, want := string(appendJSONFloat([]byte("x"), f)), string(appendJSONFloatShortest([]byte("x"), f)); got != want {
			t.Fatalf("%v: got %s, want %s", f, got, want)
		}
	}
}
