package filter

import (
	"math"
	"testing"
	"time"

	"github.com/tawsil/tawsil/agent/internal/geo"
	"github.com/tawsil/tawsil/agent/internal/source"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/wire"
)

var t0 = time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC)

// at is a fix dt seconds after t0, north metres north of Place Mohammed V.
func at(dt, north, speed, heading float64) source.Sample {
	lat, lng := geo.Offset(33.5925, -7.6186, north, 0)
	tm := t0.Add(time.Duration(dt * float64(time.Second)))
	return source.Sample{Read: tm, Fix: wire.Fix{Time: tm, Lat: lat, Lng: lng, Accuracy: 5, Speed: speed, Heading: heading, Battery: 80}}
}

func TestDropsInvalid(t *testing.T) {
	p := profile.Default() // max accuracy 50 m, max speed 45 m/s, max age 30 s
	tests := []struct {
		name string
		give source.Sample
		want Reason
	}{
		{name: "no fix", give: source.Sample{NoFix: true}, want: NoFix},
		{name: "lat", give: func() source.Sample { s := at(10, 0, 5, 0); s.Fix.Lat = 91; return s }(), want: LatRange},
		{name: "lng", give: func() source.Sample { s := at(10, 0, 5, 0); s.Fix.Lng = -180.5; return s }(), want: LngRange},
		{name: "null island", give: func() source.Sample { s := at(10, 0, 5, 0); s.Fix.Lat, s.Fix.Lng = 0, 0; return s }(), want: NullIsland},
		{name: "nan", give: func() source.Sample { s := at(10, 0, 5, 0); s.Fix.Speed = math.NaN(); return s }(), want: BadField},
		{name: "accuracy", give: func() source.Sample { s := at(10, 0, 5, 0); s.Fix.Accuracy = 80; return s }(), want: Accuracy},
		{name: "stale", give: func() source.Sample { s := at(10, 0, 5, 0); s.Read = s.Read.Add(31 * time.Second); return s }(), want: Stale},
		{name: "future", give: func() source.Sample { s := at(10, 0, 5, 0); s.Read = s.Read.Add(-time.Minute); return s }(), want: Future},
		{name: "jump", give: at(10, 600, 5, 0), want: Jump}, // 600 m in 10 s = 60 m/s
		{name: "backwards", give: at(-1, 0, 5, 0), want: Backwards},
		{name: "fast but possible", give: at(10, 400, 5, 0), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(p)
			if send, _ := f.Decide(at(0, 0, 5, 0)); !send {
				t.Fatal("first valid fix not sent")
			}
			_, got := f.Decide(tt.give)
			if got != tt.want {
				t.Fatalf("reason %q, want %q", got, tt.want)
			}
			st := f.Stats()
			if tt.want != "" && st.Dropped[tt.want] != 1 {
				t.Fatalf("dropped[%s] = %d, want 1 (stats %+v)", tt.want, st.Dropped[tt.want], st)
			}
			if st.Read != 2 {
				t.Fatalf("read %d, want 2", st.Read)
			}
		})
	}
}

func TestJumpResetsAfterConsistentFixes(t *testing.T) {
	f := New(profile.Default())
	f.Decide(at(0, 0, 5, 0))
	var reasons []Reason
	for i := 1; i <= jumpResetAfter; i++ {
		_, r := f.Decide(at(float64(i), 5000+float64(i)*5, 5, 0))
		reasons = append(reasons, r)
	}
	for i, r := range reasons[:jumpResetAfter-1] {
		if r != Jump {
			t.Fatalf("fix %d: %q, want a jump", i+1, r)
		}
	}
	if last := reasons[jumpResetAfter-1]; last != "" {
		t.Fatalf("after %d consistent fixes elsewhere: %q, want accepted", jumpResetAfter, last)
	}
}

func TestThinning(t *testing.T) {
	p := profile.Default() // min 2 s, max 15 s, 30 m, 30°, still < 0.7 m/s, heartbeat 120 s; low battery 15 % ×2
	tests := []struct {
		name string
		give source.Sample // after a first fix at(0, 0, 8, 0)
		want bool
	}{
		{name: "too soon even if far", give: at(1, 20, 8, 0), want: false},
		{name: "moved far enough", give: at(4, 32, 8, 0), want: true},
		{name: "not far, not long", give: at(4, 10, 3, 0), want: false},
		{name: "turned", give: at(4, 10, 3, 45), want: true},
		{name: "max interval", give: at(15, 10, 1, 0), want: true},
		{name: "still before heartbeat", give: at(100, 3, 0.2, wire.Unknown), want: false},
		{name: "still heartbeat", give: at(120, 3, 0.2, wire.Unknown), want: true},
		{name: "low battery doubles intervals", give: func() source.Sample { s := at(20, 10, 1, 0); s.Fix.Battery = 10; return s }(), want: false},
		{name: "low battery max interval", give: func() source.Sample { s := at(30, 10, 1, 0); s.Fix.Battery = 10; return s }(), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(p)
			f.Decide(at(0, 0, 8, 0))
			s := tt.give
			if got, r := f.Decide(s); got != tt.want || r != "" {
				t.Fatalf("send = %v (%q), want %v", got, r, tt.want)
			}
		})
	}
}

func TestSetProfileApplies(t *testing.T) {
	f := New(profile.Default())
	f.Decide(at(0, 0, 8, 0))
	strict := profile.Default()
	strict.GPS.MaxAccuracyM = 3
	f.SetProfile(strict)
	if _, r := f.Decide(at(5, 50, 8, 0)); r != Accuracy {
		t.Fatalf("after a stricter profile: %q, want %q", r, Accuracy)
	}
}

func BenchmarkDecide(b *testing.B) {
	city, err := source.CityByName("casablanca")
	if err != nil {
		b.Fatal(err)
	}
	sim := source.NewSim(city, time.Second, 1)
	samples := make([]source.Sample, 4096)
	for i := range samples {
		samples[i] = sim.Step(t0.Add(time.Duration(i)*time.Second), 1)
	}
	f := New(profile.Default())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := samples[i%len(samples)]
		s.Fix.Time = s.Fix.Time.Add(time.Duration(i/len(samples)) * 4096 * time.Second)
		s.Read = s.Fix.Time
		f.Decide(s)
	}
}
