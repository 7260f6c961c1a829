package source

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

func TestParseGPX(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		wantErr   error
		wantFixes []wire.Fix
	}{
		{
			name: "gpx 1.0 speed and course",
			give: `<gpx version="1.0"><trk><trkseg>
<trkpt lat="33.5925" lon="-7.6186"><time>2025-06-12T09:00:00Z</time><speed>5.5</speed><course>90</course><hdop>1.2</hdop></trkpt>
</trkseg></trk></gpx>`,
			wantFixes: []wire.Fix{{Time: time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC), Lat: 33.5925, Lng: -7.6186, Accuracy: 1.2 * UERE, Speed: 5.5, Heading: 90, Battery: wire.Unknown}},
		},
		{
			name: "derived speed and heading",
			give: `<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
<trkpt lat="33.0000" lon="-7.0"><time>2025-06-12T09:00:00Z</time></trkpt>
<trkpt lat="33.0009" lon="-7.0"><time>2025-06-12T09:00:10Z</time><extensions><accuracy>6</accuracy></extensions></trkpt>
</trkseg></trk></gpx>`,
			wantFixes: []wire.Fix{
				{Time: time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC), Lat: 33, Lng: -7, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
				{Time: time.Date(2025, 6, 12, 9, 0, 10, 0, time.UTC), Lat: 33.0009, Lng: -7, Accuracy: 6, Speed: 10.007543, Heading: 0, Battery: wire.Unknown},
			},
		},
		{name: "no time", give: `<gpx><trk><trkseg><trkpt lat="1" lon="2"></trkpt></trkseg></trk></gpx>`, wantErr: ErrGPX},
		{name: "empty", give: `<gpx></gpx>`, wantErr: ErrGPX},
		{name: "not xml", give: `{"gpx":1}`, wantErr: ErrGPX},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseGPX(strings.NewReader(tt.give))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.wantFixes) {
				t.Fatalf("got %d fixes, want %d", len(got), len(tt.wantFixes))
			}
			for i, w := range tt.wantFixes {
				g := got[i]
				if !g.Time.Equal(w.Time) || g.Lat != w.Lat || g.Lng != w.Lng || math.Abs(g.Accuracy-w.Accuracy) > 1e-6 ||
					math.Abs(g.Speed-w.Speed) > 1e-3 || math.Abs(g.Heading-w.Heading) > 1e-6 || g.Battery != w.Battery {
					t.Errorf("fix %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestGPXReplaySpeed(t *testing.T) {
	src, err := Open("gpx:"+filepath.Join("testdata", "casablanca-ride.gpx")+"?speed=0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Sample
	before := time.Now()
	if err := src.Run(context.Background(), func(s Sample) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 900 {
		t.Fatalf("replayed %d, want 900", len(got))
	}
	first, last := got[0].Fix.Time, got[len(got)-1].Fix.Time
	if span := last.Sub(first); span != 899*time.Second {
		t.Fatalf("replayed span %s, want the recorded 14m59s", span)
	}
	if last.After(time.Now()) || last.Before(before.Add(-time.Second)) {
		t.Fatalf("last fix at %s: a replay ends at about now, never in the future", last)
	}
}

func TestOpenRefusesBadSpecs(t *testing.T) {
	for _, give := range []string{"", "gps", "gpx:", "gpx:x.gpx?speed=-1", "gpx:x.gpx?pace=2", "sim:paris", "serial:/dev/ttyS0"} {
		if _, err := Open(give, Options{}); !errors.Is(err, ErrSpec) {
			t.Errorf("Open(%q) = %v, want ErrSpec", give, err)
		}
	}
}

func FuzzParseGPX(f *testing.F) {
	ride, err := os.ReadFile(filepath.Join("testdata", "casablanca-ride.gpx"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ride[:2000])
	f.Add([]byte(`<gpx><trk><trkseg><trkpt lat="33" lon="-7"><time>2025-06-12T09:00:00Z</time><speed>-3</speed><course>400</course></trkpt></trkseg></trk></gpx>`))
	f.Add([]byte(`<gpx><trk><trkseg><trkpt lat="NaN" lon="1e400"><time>2025-06-12T09:00:00Z</time></trkpt></trkseg></trk></gpx>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		fixes, err := ParseGPX(strings.NewReader(string(doc)))
		if err != nil {
			return
		}
		if len(fixes) == 0 {
			t.Fatal("no error and no fix")
		}
		for _, fx := range fixes {
			if fx.Speed != wire.Unknown && (fx.Speed < 0 || math.IsNaN(fx.Speed)) {
				t.Fatalf("speed %v", fx.Speed)
			}
			if fx.Heading != wire.Unknown && (fx.Heading < 0 || fx.Heading >= 360) {
				t.Fatalf("heading %v", fx.Heading)
			}
		}
	})
}
