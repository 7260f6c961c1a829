package osmand

import (
	"errors"
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// Requests as Traccar Client sends them: Android up to 8 (POST with the
// parameters in the query), the OsmAnd app and other trackers (GET),
// timestamps in each form the Traccar server reads.
func TestDecodeQuery(t *testing.T) {
	tests := []struct {
		name, give string
		want       wire.Fix
		wantID     string
	}{
		{
			name:   "traccar client android",
			give:   "id=c42&timestamp=1795254000&lat=33.573100&lon=-7.589800&speed=9.7&bearing=181.5&altitude=40.0&accuracy=6.5&batt=85.0",
			wantID: "c42",
			want:   wire.Fix{Time: time.Unix(1795254000, 0).UTC(), Lat: 33.5731, Lng: -7.5898, Accuracy: 6.5, Speed: 9.7 * KnotsToMPS, Heading: 181.5, Battery: 85},
		},
		{
			name:   "milliseconds, heading, deviceid",
			give:   "deviceid=c42&timestamp=1795254000250&lat=33.5731&lon=-7.5898&heading=90",
			wantID: "c42",
			want:   wire.Fix{Time: time.UnixMilli(1795254000250).UTC(), Lat: 33.5731, Lng: -7.5898, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: 90, Battery: wire.Unknown},
		},
		{
			name:   "fractional seconds",
			give:   "id=c42&timestamp=1795254000.5&lat=33.5731&lon=-7.5898",
			wantID: "c42",
			want:   wire.Fix{Time: time.UnixMilli(1795254000500).UTC(), Lat: 33.5731, Lng: -7.5898, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
		},
		{
			name:   "date time and location",
			give:   "id=c42&timestamp=2026-11-21+09:59:58&location=33.5731,-7.5898&batt=85",
			wantID: "c42",
			want:   wire.Fix{Time: now.Add(-2 * time.Second), Lat: 33.5731, Lng: -7.5898, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: 85},
		},
		{
			name:   "rfc 3339",
			give:   "id=c42&timestamp=2026-11-21T09:59:58.125Z&lat=33.5731&lon=-7.5898",
			wantID: "c42",
			want:   wire.Fix{Time: now.Add(-1875 * time.Millisecond), Lat: 33.5731, Lng: -7.5898, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
		},
		{
			name:   "no timestamp: time received",
			give:   "id=c42&lat=33.5731&lon=-7.5898",
			wantID: "c42",
			want:   wire.Fix{Time: now, Lat: 33.5731, Lng: -7.5898, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeQuery(v, now)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Epoch, tt.want.Seq = wire.EpochOsmAnd, wire.DerivedSeq(tt.want)
			if got.DeviceID != tt.wantID || len(got.Fixes) != 1 || !fixEqual(got.Fixes[0], tt.want) {
				t.Fatalf("got %+v, want %s %+v", got, tt.wantID, tt.want)
			}
		})
	}
}

func TestDecodeQueryRejects(t *testing.T) {
	tests := []struct{ name, give string }{
		{"no lat", "id=c42&lon=-7.5"},
		{"lat text", "id=c42&lat=abc&lon=-7.5"},
		{"lat NaN", "id=c42&lat=NaN&lon=-7.5"},
		{"lat range", "id=c42&lat=91&lon=-7.5"},
		{"null island", "id=c42&lat=0&lon=0"},
		{"batt 250", "id=c42&lat=33.5&lon=-7.5&batt=250"},
		{"timestamp text", "id=c42&lat=33.5&lon=-7.5&timestamp=yesterday"},
		{"timestamp negative", "id=c42&lat=33.5&lon=-7.5&timestamp=-5"},
		{"speed text", "id=c42&lat=33.5&lon=-7.5&speed=fast"},
		{"accuracy inf", "id=c42&lat=33.5&lon=-7.5&accuracy=Inf"},
		{"hex", "id=c42&lat=0x1p5&lon=-7.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := DecodeQuery(v, now); err == nil {
				t.Fatalf("accepted: %+v", r)
			}
		})
	}
	v, err := url.ParseQuery("id=c42&lat=33.5&lon=-7.5&valid=false")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeQuery(v, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("valid=false: %v, want ErrInvalid", err)
	}
}

// The JSON body of Traccar Client 9+ (one location, a batch, unknown -1s).
func TestDecodeJSON(t *testing.T) {
	give := `{"device_id":"c42","location":{"timestamp":"2026-11-21T09:59:58.125Z","coords":{"latitude":33.5731,"longitude":-7.5898,"accuracy":5.5,"speed":4.2,"heading":90,"altitude":41},"is_moving":true,"odometer":1200,"event":"motionchange","battery":{"level":0.85,"is_charging":false},"activity":{"type":"on_bicycle"},"extras":{}}}`
	got, err := DecodeJSON([]byte(give))
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Fix{Time: now.Add(-1875 * time.Millisecond), Lat: 33.5731, Lng: -7.5898, Accuracy: 5.5, Speed: 4.2, Heading: 90, Battery: 85}
	want.Epoch, want.Seq = wire.EpochOsmAnd, wire.DerivedSeq(want)
	if got.DeviceID != "c42" || len(got.Fixes) != 1 || !fixEqual(got.Fixes[0], want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	batch := `{"device_id":"c42","location":[{"timestamp":"2026-11-21T09:59:58Z","coords":{"latitude":33.5731,"longitude":-7.5898,"speed":-1,"heading":-1},"battery":{"level":-1}},{"timestamp":"2026-11-21T09:59:59Z","coords":{"latitude":33.5732,"longitude":-7.5898}}]}`
	got, err = DecodeJSON([]byte(batch))
	if err != nil || len(got.Fixes) != 2 || got.Fixes[0].Speed != wire.Unknown || got.Fixes[0].Heading != wire.Unknown || got.Fixes[0].Battery != wire.Unknown {
		t.Fatalf("batch: %+v, %v", got, err)
	}
	for _, bad := range []string{
		`{"device_id":"c42"}`,
		`{"device_id":"c42","location":[]}`,
		`{"device_id":"c42","location":{"timestamp":"2026-11-21T09:59:58Z","coords":{"latitude":33.5}}}`,
		`{"device_id":"c42","location":{"timestamp":"yesterday","coords":{"latitude":33.5,"longitude":-7.5}}}`,
		`{"device_id":"c42","location":{"timestamp":"2026-11-21T09:59:58Z","coords":{"latitude":95,"longitude":-7.5}}}`,
		`{"device_id":"c42","location":{"timestamp":"2026-11-21T09:59:58Z","coords":{"latitude":33.5,"longitude":-7.5},"battery":{"level":85}}}`,
		`{"device_id":"c42","location":"here"}`,
		`[1,2]`,
	} {
		if r, err := DecodeJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted: %+v", bad, r)
		}
	}
}

// Two reports in the same second at different places are two fixes; the
// same report twice is one.
func TestSameSecondNotDuplicate(t *testing.T) {
	dec := func(q string) wire.Fix {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeQuery(v, now)
		if err != nil {
			t.Fatal(err)
		}
		return r.Fixes[0]
	}
	a := dec("id=c&timestamp=1795254000&lat=33.5731&lon=-7.5898")
	b := dec("id=c&timestamp=1795254000&lat=33.5732&lon=-7.5898")
	a2 := dec("id=c&timestamp=1795254000&lat=33.5731&lon=-7.5898&batt=50")
	if a.Seq == b.Seq || a.Seq != a2.Seq {
		t.Fatalf("seqs %d %d %d", a.Seq, b.Seq, a2.Seq)
	}
}

func fixEqual(a, b wire.Fix) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9 }
	return a.Epoch == b.Epoch && a.Seq == b.Seq && a.Time.Equal(b.Time) && near(a.Lat, b.Lat) && near(a.Lng, b.Lng) && near(a.Accuracy, b.Accuracy) &&
		near(a.Speed, b.Speed) && near(a.Heading, b.Heading) && a.Battery == b.Battery
}

func FuzzDecodeQuery(f *testing.F) {
	f.Add("id=c42&timestamp=1795254000&lat=33.573100&lon=-7.589800&speed=9.7&bearing=181.5&altitude=40.0&accuracy=6.5&batt=85.0")
	f.Add("id=c42&timestamp=2026-11-21+09:59:58&location=33.5731,-7.5898&valid=true")
	f.Add("deviceid=c42&timestamp=1795254000250&lat=-90&lon=180&heading=720")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		r, err := DecodeQuery(v, now)
		if err != nil {
			return
		}
		for _, fx := range r.Fixes {
			if err := wire.CheckFix(fx); err != nil || fx.Seq == 0 || fx.Time.IsZero() {
				t.Fatalf("decoded an invalid fix %+v: %v", fx, err)
			}
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"device_id":"c42","location":{"timestamp":"2026-11-21T09:59:58.125Z","coords":{"latitude":33.5731,"longitude":-7.5898,"accuracy":5.5,"speed":4.2,"heading":90},"battery":{"level":0.85}}}`))
	f.Add([]byte(`{"device_id":"c42","location":[{"timestamp":"2026-11-21T09:59:58Z","coords":{"latitude":33.5731,"longitude":-7.5898,"speed":-1}}]}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeJSON(p)
		if err != nil {
			return
		}
		if len(r.Fixes) == 0 || len(r.Fixes) > MaxLocations {
			t.Fatalf("%d fixes", len(r.Fixes))
		}
		for _, fx := range r.Fixes {
			if err := wire.CheckFix(fx); err != nil || fx.Seq == 0 {
				t.Fatalf("decoded an invalid fix %+v: %v", fx, err)
			}
		}
	})
}
