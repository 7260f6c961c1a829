package density

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Two points in Casablanca about 2 km apart: different res-8 cells, and
// (checked in mustCells) the same res-7 cell or not, as the test needs.
const (
	aLat, aLng = 33.5731, -7.5898
	bLat, bLng = 33.5890, -7.6050
)

func mustCell(tb testing.TB, lat, lng float64, res int) h3.Cell {
	tb.Helper()
	c, err := CellOf(lat, lng, res)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func presence(tb testing.TB, lat, lng float64, supply uint8) Presence {
	tb.Helper()
	return Presence{Cell8: mustCell(tb, lat, lng, Res), Cell7: mustCell(tb, lat, lng, CityRes), Supply: supply}
}

// counts is the figures of one cell, for comparison.
type counts struct{ avail, busy, open, b15, b60, f60 int }

func countsOf(s CellStats) counts {
	return counts{s.AvailableCouriers, s.BusyCouriers, s.OpenOrders, s.Booked15m, s.Booked60m, s.Failed60m}
}

// cellCounts returns the counts per cell at res.
func cellCounts(m *Map, res int, now time.Time) map[string]counts {
	out := map[string]counts{}
	for _, s := range m.Cells(res, nil, now) {
		out[s.Cell] = countsOf(s)
	}
	return out
}

func TestEventSequence(t *testing.T) {
	m := New()
	a8, b8 := mustCell(t, aLat, aLng, Res).String(), mustCell(t, bLat, bLng, Res).String()
	a9, b9 := mustCell(t, aLat, aLng, 9), mustCell(t, bLat, bLng, 9)
	none := Presence{}
	pa := func(s uint8) Presence { return presence(t, aLat, aLng, s) }
	pb := func(s uint8) Presence { return presence(t, bLat, bLng, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		do   func()
		now  time.Time
		want map[string]counts
	}{
		{"courier appears available in a", func() { m.CourierChanged("c1", none, pa(SupplyAvailable)) }, t0,
			map[string]counts{a8: {avail: 1}}},
		{"second courier busy in a", func() { m.CourierChanged("c2", none, pa(SupplyBusy)) }, t0,
			map[string]counts{a8: {avail: 1, busy: 1}}},
		{"c1 moves to b", func() { m.CourierChanged("c1", pa(SupplyAvailable), pb(SupplyAvailable)) }, t0,
			map[string]counts{a8: {busy: 1}, b8: {avail: 1}}},
		{"c1 goes on break", func() { m.CourierChanged("c1", pb(SupplyAvailable), pb(SupplyNone)) }, t0,
			map[string]counts{a8: {busy: 1}}},
		{"order booked and opened in b", func() {
			must(m.Booked(b9, t0.Add(time.Minute)))
			must(m.OrderOpened("o1", b9))
		}, t0.Add(time.Minute), map[string]counts{a8: {busy: 1}, b8: {open: 1, b15: 1, b60: 1}}},
		{"opening again counts once", func() { must(m.OrderOpened("o1", b9)) }, t0.Add(time.Minute),
			map[string]counts{a8: {busy: 1}, b8: {open: 1, b15: 1, b60: 1}}},
		{"failure in a", func() { must(m.Failed(a9, t0.Add(2*time.Minute))) }, t0.Add(2 * time.Minute),
			map[string]counts{a8: {busy: 1, f60: 1}, b8: {open: 1, b15: 1, b60: 1}}},
		{"15 minutes after booking it still counts", func() {}, t0.Add(15 * time.Minute),
			map[string]counts{a8: {busy: 1, f60: 1}, b8: {open: 1, b15: 1, b60: 1}}},
		{"16 minutes after, out of the 15m window", func() {}, t0.Add(16 * time.Minute),
			map[string]counts{a8: {busy: 1, f60: 1}, b8: {open: 1, b60: 1}}},
		{"order closed", func() {
			if !m.OrderClosed("o1") || m.OrderClosed("o1") {
				t.Fatal("close o1: want true then false")
			}
		}, t0.Add(16 * time.Minute), map[string]counts{a8: {busy: 1, f60: 1}, b8: {b60: 1}}},
		{"61 minutes after booking, out of the hour", func() {}, t0.Add(61 * time.Minute),
			map[string]counts{a8: {busy: 1, f60: 1}}},
		{"62 minutes after the failure", func() {}, t0.Add(62 * time.Minute),
			map[string]counts{a8: {busy: 1}}},
		{"busy courier leaves", func() { m.CourierChanged("c2", pa(SupplyBusy), none) }, t0.Add(62 * time.Minute),
			map[string]counts{}},
	}
	for _, st := range steps {
		st.do()
		if got := cellCounts(m, Res, st.now); !mapsEqual(got, st.want) {
			t.Fatalf("%s: got %v, want %v", st.name, got, st.want)
		}
	}
	// The city level saw the same events.
	if got := cellCounts(m, CityRes, t0.Add(5*time.Minute)); len(got) == 0 {
		t.Fatal("res 7: no cells")
	}
	if n := m.Prune(t0.Add(2 * time.Hour)); n == 0 {
		t.Fatal("prune removed nothing")
	}
	if len(m.levels[Res]) != 0 || len(m.levels[CityRes]) != 0 {
		t.Fatalf("cells left after prune: %d, %d", len(m.levels[Res]), len(m.levels[CityRes]))
	}
}

func mapsEqual(a, b map[string]counts) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestCityLevelSums(t *testing.T) {
	m := New()
	pts := [][2]float64{{aLat, aLng}, {bLat, bLng}, {33.60, -7.52}, {33.50, -7.70}}
	for i, p := range pts {
		m.CourierChanged("c", Presence{}, presence(t, p[0], p[1], SupplyAvailable))
		if err := m.Booked(mustCell(t, p[0], p[1], 10), t0); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := m.Failed(mustCell(t, p[0], p[1], 9), t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum := func(res int) (s counts) {
		for _, c := range cellCounts(m, res, t0) {
			s.avail += c.avail
			s.b60 += c.b60
			s.f60 += c.f60
		}
		return s
	}
	if s8, s7 := sum(Res), sum(CityRes); s8 != s7 || s8.avail != 4 || s8.b60 != 4 || s8.f60 != 2 {
		t.Fatalf("res 8 totals %+v, res 7 totals %+v", s8, s7)
	}
}

func TestEventErrors(t *testing.T) {
	m := New()
	coarse := mustCell(t, aLat, aLng, 6)
	tests := []struct {
		name string
		give error
	}{
		{"opened coarse", m.OrderOpened("o", coarse)},
		{"opened invalid", m.OrderOpened("o", h3.Cell(12345))},
		{"booked coarse", m.Booked(coarse, t0)},
		{"failed zero", m.Failed(0, t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.give, ErrCell) {
				t.Fatalf("got %v, want ErrCell", tt.give)
			}
		})
	}
	if got := m.Cells(Res, nil, t0); len(got) != 0 {
		t.Fatalf("rejected events changed counts: %v", got)
	}
	if got := m.Cells(9, nil, t0); got != nil {
		t.Fatalf("res 9: got %v, want nil", got)
	}
}

func TestWindowLateEvents(t *testing.T) {
	tests := []struct {
		name   string
		give   []time.Duration // event offsets from t0
		now    time.Duration
		want15 int
		want60 int
	}{
		{"same minute", []time.Duration{0, 30 * time.Second}, 0, 2, 2},
		{"future event not counted", []time.Duration{5 * time.Minute}, 0, 0, 0},
		{"late event within the hour", []time.Duration{40 * time.Minute, 10 * time.Minute}, 40 * time.Minute, 1, 2},
		{"event older than the slot's hour is dropped", []time.Duration{70 * time.Minute, 10 * time.Minute}, 70 * time.Minute, 1, 1},
		{"slot reused after an hour", []time.Duration{10 * time.Minute, 70 * time.Minute}, 70 * time.Minute, 1, 1},
		{"59 minutes back counts, 60 does not", []time.Duration{0, time.Minute}, 60 * time.Minute, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w window
			for _, d := range tt.give {
				w.add(minuteOf(t0.Add(d)))
			}
			now := minuteOf(t0.Add(tt.now))
			if got15, got60 := w.sum(now, 15), w.sum(now, 60); got15 != tt.want15 || got60 != tt.want60 {
				t.Fatalf("got %d/%d, want %d/%d", got15, got60, tt.want15, tt.want60)
			}
		})
	}
}

func TestBBox(t *testing.T) {
	m := New()
	m.CourierChanged("c1", Presence{}, presence(t, aLat, aLng, SupplyAvailable))
	m.CourierChanged("c2", Presence{}, presence(t, bLat, bLng, SupplyAvailable))
	a := m.Cells(Res, nil, t0)
	if len(a) != 2 {
		t.Fatalf("got %d cells", len(a))
	}
	var ca CellStats
	for _, s := range a {
		if s.Cell == mustCell(t, aLat, aLng, Res).String() {
			ca = s
		}
	}
	tests := []struct {
		name string
		give *BBox
		want []string
	}{
		{"nil is everything", nil, []string{a[0].Cell, a[1].Cell}},
		{"around a's centre", &BBox{ca.Lng - 1e-6, ca.Lat - 1e-6, ca.Lng + 1e-6, ca.Lat + 1e-6}, []string{ca.Cell}},
		{"edges inclusive", &BBox{ca.Lng, ca.Lat, ca.Lng, ca.Lat}, []string{ca.Cell}},
		{"just missing the centre", &BBox{ca.Lng + 1e-9, ca.Lat, ca.Lng + 1, ca.Lat + 1}, nil},
		{"elsewhere", &BBox{-6, 35, -5, 36}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range m.Cells(Res, tt.give, t0) {
				got = append(got, s.Cell)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGeoJSON(t *testing.T) {
	m := New()
	m.CourierChanged("c1", Presence{}, presence(t, aLat, aLng, SupplyBusy))
	if err := m.Booked(mustCell(t, aLat, aLng, 9), t0); err != nil {
		t.Fatal(err)
	}
	b, err := GeoJSON(m.Cells(Res, nil, t0))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Type     string
		Features []struct {
			Type     string
			Geometry struct {
				Type        string
				Coordinates [][][2]float64
			}
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Type != "FeatureCollection" || len(doc.Features) != 1 {
		t.Fatalf("doc %s", b)
	}
	f := doc.Features[0]
	if f.Type != "Feature" || f.Geometry.Type != "Polygon" || len(f.Geometry.Coordinates) != 1 {
		t.Fatalf("feature %s", b)
	}
	ring := f.Geometry.Coordinates[0]
	if len(ring) != 7 || ring[0] != ring[6] {
		t.Fatalf("ring of %d points, closed %v", len(ring), ring[0] == ring[len(ring)-1])
	}
	for _, p := range ring {
		if p[0] > -7 || p[0] < -8 || p[1] < 33 || p[1] > 34 {
			t.Fatalf("point %v is not [lng, lat] in Casablanca", p)
		}
	}
	want := map[string]any{
		"cell": mustCell(t, aLat, aLng, Res).String(), "available_couriers": 0.0, "busy_couriers": 1.0,
		"open_orders": 0.0, "booked_15m": 1.0, "booked_60m": 1.0, "failed_60m": 0.0,
	}
	if len(f.Properties) != len(want) {
		t.Fatalf("properties %v", f.Properties)
	}
	for k, v := range want {
		if f.Properties[k] != v {
			t.Fatalf("property %s = %v, want %v", k, f.Properties[k], v)
		}
	}
	if b, err := GeoJSON(nil); err != nil || string(b) != `{"type":"FeatureCollection","features":[]}` {
		t.Fatalf("empty: %s, %v", b, err)
	}
}

func TestAlerts(t *testing.T) {
	tests := []struct {
		name          string
		avail, open   int
		booked        int
		ratio         float64
		wantAlert     bool
		wantNoSupply  bool
		wantDemandOut int
	}{
		{"no demand no supply", 0, 0, 0, 2, false, false, 0},
		{"demand without supply", 0, 1, 0, 2, true, true, 1},
		{"at the ratio is fine", 2, 3, 1, 2, false, false, 0},
		{"just over the ratio", 2, 4, 1, 2, true, false, 5},
		{"supply covers", 5, 1, 1, 2, false, false, 0},
		{"zero ratio: any demand over supply", 3, 1, 0, 0, true, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			c9 := mustCell(t, aLat, aLng, 9)
			for range tt.avail {
				m.CourierChanged("c", Presence{}, presence(t, aLat, aLng, SupplyAvailable))
			}
			for i := range tt.open {
				if err := m.OrderOpened(string(rune('a'+i)), c9); err != nil {
					t.Fatal(err)
				}
			}
			for range tt.booked {
				if err := m.Booked(c9, t0); err != nil {
					t.Fatal(err)
				}
			}
			got := m.Alerts(Res, tt.ratio, t0)
			if !tt.wantAlert {
				if len(got) != 0 {
					t.Fatalf("got %+v, want no alert", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d alerts, want 1", len(got))
			}
			a := got[0]
			if a.NoSupply != tt.wantNoSupply || a.Demand != tt.wantDemandOut || a.AvailableCouriers != tt.avail ||
				a.Cell != mustCell(t, aLat, aLng, Res).String() {
				t.Fatalf("got %+v", a)
			}
			if mustCell(t, a.Lat, a.Lng, Res).String() != a.Cell {
				t.Fatalf("centre %v,%v is not in %s", a.Lat, a.Lng, a.Cell)
			}
		})
	}
}

func TestAlertsOrder(t *testing.T) {
	m := New()
	pts := [][2]float64{{aLat, aLng}, {bLat, bLng}, {33.60, -7.52}}
	supply := []int{0, 1, 1}
	orders := []int{1, 3, 2}
	n := 0
	for i, p := range pts {
		for range supply[i] {
			m.CourierChanged("c", Presence{}, presence(t, p[0], p[1], SupplyAvailable))
		}
		for range orders[i] {
			n++
			if err := m.OrderOpened(string(rune('a'+n)), mustCell(t, p[0], p[1], 9)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	for _, a := range m.Alerts(Res, 1, t0) {
		got = append(got, a.Cell)
	}
	want := []string{mustCell(t, aLat, aLng, Res).String(), mustCell(t, bLat, bLng, Res).String(), mustCell(t, 33.60, -7.52, Res).String()}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v (no supply first, then by ratio)", got, want)
	}
}

func BenchmarkCourierChanged(b *testing.B) {
	m := New()
	p := [2]Presence{presence(b, aLat, aLng, SupplyAvailable), presence(b, bLat, bLng, SupplyAvailable)}
	m.CourierChanged("c", Presence{}, p[0])
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.CourierChanged("c", p[i&1], p[(i+1)&1])
	}
}

func BenchmarkBooked(b *testing.B) {
	m := New()
	c := mustCell(b, aLat, aLng, 9)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := m.Booked(c, t0.Add(time.Duration(i)*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
