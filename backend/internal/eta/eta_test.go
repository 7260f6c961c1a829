package eta

import (
	"errors"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
	"github.com/uber/h3-go/v4"
)

// 10:00 in Casablanca (UTC+1; March 2026 would be Ramadan, UTC+0).
var morning = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

func mustModel(tb testing.TB, patch func(*Config)) *Model {
	tb.Helper()
	cfg := Default()
	if patch != nil {
		patch(&cfg)
	}
	m, err := New(cfg, nil)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return m
}

// fixAt returns a fix moved north of (lat,lng) by metres, dt after t.
func fixAt(seq uint64, t time.Time, lat, lng float64) wire.Fix {
	return wire.Fix{Seq: seq, Time: t, Lat: lat, Lng: lng, Accuracy: 5, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
}

const mPerDegLat = 111_195.0

// drive feeds n pairs of fixes moving north at mps from (lat,lng) every 5 s.
func drive(tb testing.TB, m *Model, n int, lat, lng, mps float64, start time.Time) {
	tb.Helper()
	prev := fixAt(1, start, lat, lng)
	for i := range n {
		t := prev.Time.Add(5 * time.Second)
		// oscillate around the start point so all samples stay in one cell
		dir := 1.0
		if i%2 == 1 {
			dir = -1
		}
		f := fixAt(prev.Seq+1, t, prev.Lat+dir*mps*5/mPerDegLat, lng)
		if got := m.Observe("c1", prev, f); got != Recorded {
			tb.Fatalf("pair %d: %v, want recorded", i, got)
		}
		prev = f
	}
}

func TestObserveOutcomes(t *testing.T) {
	m := mustModel(t, nil)
	p := fixAt(1, morning, 33.5892, -7.6325)
	north := func(metres float64, dt time.Duration) wire.Fix {
		return fixAt(2, morning.Add(dt), p.Lat+metres/mPerDegLat, p.Lng)
	}
	tests := []struct {
		name string
		give wire.Fix
		want Outcome
	}{
		{"travel", north(25, 5*time.Second), Recorded},
		{"stopped", north(1, 5*time.Second), Stopped},
		{"jump", north(1000, 5*time.Second), Implausible},
		{"long gap", north(800, 5*time.Minute), GapTooLong},
		{"short gap", north(3, time.Second), GapTooShort},
		{"backwards", north(25, -5*time.Second), GapTooShort},
		{"inaccurate", func() wire.Fix { f := north(25, 5*time.Second); f.Accuracy = 200; return f }(), Inaccurate},
		{"null island", wire.Fix{Time: morning.Add(5 * time.Second)}, InvalidFix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Observe("c1", p, tt.give); got != tt.want {
				t.Errorf("Observe = %v, want %v", got, tt.want)
			}
		})
	}
	if s := m.Snapshot(); len(s.Cells) != 1 || s.Cells[0].Samples != 1 {
		t.Errorf("only the travel pair should be recorded; snapshot %+v", s.Cells)
	}
}

func TestSpeedNeedsMinSamples(t *testing.T) {
	m := mustModel(t, func(c *Config) { c.MinSamples = 10 })
	lat, lng := 33.5892, -7.6325
	cell, err := h3.LatLngToCell(h3.NewLatLng(lat, lng), 7)
	if err != nil {
		t.Fatal(err)
	}
	hour := m.Hour(morning)
	if hour != 10 {
		t.Fatalf("local hour = %d, want 10 (Africa/Casablanca, UTC+1)", hour)
	}
	drive(t, m, 9, lat, lng, 6, morning)
	mps, src, n := m.Speed(cell, hour)
	if src != SourcePrior || n != 9 || math.Abs(mps-18/3.6) > 1e-9 {
		t.Errorf("after 9 samples: %v %s %d, want prior 5 m/s from 9 samples", mps, src, n)
	}
	drive(t, m, 1, lat, lng, 6, morning.Add(time.Minute))
	mps, src, n = m.Speed(cell, hour)
	if src != SourceLearned || n != 10 || math.Abs(mps-6) > 0.01 {
		t.Errorf("after 10 samples: %v %s %d, want learned 6 m/s", mps, src, n)
	}
	// Another hour of the same cell is still the prior.
	if _, src, _ := m.Speed(cell, (hour+1)%24); src != SourcePrior {
		t.Errorf("hour %d source = %s, want prior", hour+1, src)
	}
}

func TestEWMATracksChange(t *testing.T) {
	m := mustModel(t, func(c *Config) { c.MinSamples = 1; c.Alpha = 0.1 })
	lat, lng := 33.5892, -7.6325
	drive(t, m, 200, lat, lng, 4, morning)
	drive(t, m, 100, lat, lng, 8, morning.Add(time.Minute))
	got := m.SpeedAt(lat, lng, morning)
	// a plain running mean would sit at 5.33; the EWMA is near the new 8
	if got < 7.9 {
		t.Errorf("speed %v m/s after a change from 4 to 8, want near 8", got)
	}
}

func TestTravel(t *testing.T) {
	m := mustModel(t, nil)
	// Twin Center to Casa Port station: about 2.85 km great-circle.
	from := Point{Lat: 33.5892, Lng: -7.6325}
	to := Point{Lat: 33.5978, Lng: -7.6040}
	d := geo.DistanceLatLngM(from.Lat, from.Lng, to.Lat, to.Lng)
	if d < 2800 || d > 2900 {
		t.Fatalf("haversine = %v m, want about 2.85 km", d)
	}
	want := time.Duration(d * 1.3 / (18 / 3.6) * float64(time.Second))
	if got := m.TravelTime(from, to, morning); got != want {
		t.Errorf("TravelTime = %v, want %v (prior, detour 1.3)", got, want)
	}
	// Learn 3 m/s at the origin: the trip gets slower.
	mm := mustModel(t, func(c *Config) { c.MinSamples = 5 })
	drive(t, mm, 5, from.Lat, from.Lng, 3, morning)
	slow := mm.TravelTime(from, to, morning)
	if math.Abs(slow.Seconds()-d*1.3/3) > 1 {
		t.Errorf("learned TravelTime = %v, want %.0fs", slow, d*1.3/3)
	}
	if zero := m.Travel(from.Lat, from.Lng, from.Lat, from.Lng, morning); zero != 0 {
		t.Errorf("same point travel = %v", zero)
	}
}

func TestSnapshotRestore(t *testing.T) {
	m := mustModel(t, func(c *Config) { c.MinSamples = 3 })
	drive(t, m, 5, 33.5892, -7.6325, 6, morning)
	drive(t, m, 3, 34.0240, -6.8225, 4, morning.Add(3*time.Hour))
	snap := m.Snapshot()
	if len(snap.Cells) != 2 || snap.TimeZone != "Africa/Casablanca" || snap.DetourFactor != 1.3 {
		t.Fatalf("snapshot = %+v", snap)
	}
	r := mustModel(t, func(c *Config) { c.MinSamples = 3 })
	if err := r.Restore(snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	for _, p := range []Point{{Lat: 33.5892, Lng: -7.6325}, {Lat: 34.0240, Lng: -6.8225}} {
		for _, at := range []time.Time{morning, morning.Add(3 * time.Hour)} {
			if a, b := m.SpeedAt(p.Lat, p.Lng, at), r.SpeedAt(p.Lat, p.Lng, at); a != b {
				t.Errorf("restored speed at %v %v = %v, want %v", p, at, b, a)
			}
		}
	}

	bad := []struct {
		name string
		give func(*Snapshot)
	}{
		{"cell", func(s *Snapshot) { s.Cells[0].Cell = "zz" }},
		{"resolution", func(s *Snapshot) { s.Cells[0].Cell = "881f1d4a9dfffff" }},
		{"hour", func(s *Snapshot) { s.Cells[0].Hour = 24 }},
		{"speed", func(s *Snapshot) { s.Cells[0].Mps = 300 }},
		{"samples", func(s *Snapshot) { s.Cells[0].Samples = 0 }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s := m.Snapshot()
			tt.give(&s)
			before := r.Snapshot()
			if err := r.Restore(s); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if after := r.Snapshot(); len(after.Cells) != len(before.Cells) || after.Cells[0] != before.Cells[0] {
				t.Error("failed Restore changed the model")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(*Config)
	}{
		{"prior", func(c *Config) { c.PriorKmh = 0 }},
		{"detour", func(c *Config) { c.DetourFactor = 0.9 }},
		{"res", func(c *Config) { c.Resolution = 16 }},
		{"samples", func(c *Config) { c.MinSamples = 0 }},
		{"gaps", func(c *Config) { c.MaxGap = c.MinGap }},
		{"speeds", func(c *Config) { c.MaxMps = c.StoppedMps }},
		{"alpha", func(c *Config) { c.Alpha = 0 }},
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default invalid: %v", err)
	}
	for _, tt := range tests {
		c := Default()
		tt.give(&c)
		if _, err := New(c, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", tt.name, err)
		}
	}
}

func TestConcurrentObserveAndTravel(t *testing.T) {
	m := mustModel(t, func(c *Config) { c.MinSamples = 1 })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			drive(t, m, 200, 33.58+float64(g)*0.01, -7.63, 5, morning)
		})
		wg.Go(func() {
			for range 200 {
				if d := m.Travel(33.58, -7.63, 33.60, -7.60, morning); d <= 0 {
					t.Errorf("travel %v", d)
					return
				}
			}
		})
	}
	wg.Wait()
	var total int
	for _, c := range m.Snapshot().Cells {
		total += c.Samples
	}
	if total != 800 {
		t.Errorf("samples = %d, want 800", total)
	}
}

func BenchmarkTravel(b *testing.B) {
	m := mustModel(b, nil)
	drive(b, m, 100, 33.5892, -7.6325, 6, morning)
	b.ReportAllocs()
	for b.Loop() {
		m.Travel(33.5892, -7.6325, 33.5978, -7.6040, morning)
	}
}

func BenchmarkObserve(b *testing.B) {
	m := mustModel(b, nil)
	p := fixAt(1, morning, 33.5892, -7.6325)
	f := fixAt(2, morning.Add(5*time.Second), 33.5892+30/mPerDegLat, -7.6325)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe("c1", p, f)
	}
}

func TestHourUsesMoroccanTime(t *testing.T) {
	m := mustModel(t, nil)
	tests := []struct {
		give time.Time
		want int
	}{
		{time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC), 10},  // UTC+1
		{time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), 9},   // Ramadan: UTC+0
		{time.Date(2026, 5, 4, 23, 30, 0, 0, time.UTC), 0}, // next local day
	}
	for _, tt := range tests {
		if got := m.Hour(tt.give); got != tt.want {
			t.Errorf("Hour(%v) = %d, want %d", tt.give, got, tt.want)
		}
	}
}
