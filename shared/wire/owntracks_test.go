package wire_test

import (
	"errors"
	"testing"

	"github.com/tawsil/tawsil/shared/wire"
	"github.com/tawsil/tawsil/shared/wire/golden"
)

func TestDecodeOwnTracks(t *testing.T) {
	p, want, err := golden.OwnTracksSample()
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeOwnTracks(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fixEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestDecodeOwnTracksRejects(t *testing.T) {
	tests := []struct {
		name string
		give string
		want error
	}{
		{"not location", `{"_type":"transition","lat":1,"lon":1,"tst":1}`, wire.ErrNotLocation},
		{"missing lat", `{"_type":"location","lon":1,"tst":1}`, wire.ErrField},
		{"lat range", `{"_type":"location","lat":91,"lon":1,"tst":1}`, wire.ErrLatRange},
		{"lng range", `{"_type":"location","lat":1,"lon":-181,"tst":1}`, wire.ErrLngRange},
		{"null island", `{"_type":"location","lat":0,"lon":0,"tst":1}`, wire.ErrNullIsland},
		{"negative tst", `{"_type":"location","lat":1,"lon":1,"tst":-5}`, wire.ErrField},
		{"battery", `{"_type":"location","lat":1,"lon":1,"tst":5,"batt":250}`, wire.ErrField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wire.DecodeOwnTracks([]byte(tt.give)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := wire.DecodeOwnTracks([]byte(`{"_type":"location","lat":"x"}`)); err == nil {
		t.Fatal("wrong type accepted")
	}
}

func FuzzDecodeOwnTracks(f *testing.F) {
	p, _, err := golden.OwnTracksSample()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add([]byte(`{"_type":"location","lat":1e308,"lon":-1e308,"tst":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		fix, err := wire.DecodeOwnTracks(p)
		if err != nil {
			return
		}
		if err := wire.CheckFix(fix); err != nil {
			t.Fatalf("decoded an invalid fix: %v", err)
		}
	})
}

func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":3,"type":"route_plan","route":{"version":2,"stops":[{"order_id":"o1","kind":"dropoff","lat":33.5,"lng":-7.6,"eta":"2026-11-21T10:00:00Z"}]},"at":"2026-11-21T09:40:00Z"}`))
	f.Add([]byte(`{"v":1,"seq":1,"type":"offer","order_id":"o1","at":"2026-11-21T09:40:00Z"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		task, err := wire.DecodeTask(p)
		if err != nil {
			return
		}
		if task.Seq == 0 || task.V != wire.MessageVersion {
			t.Fatalf("accepted invalid task %+v", task)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"v":1,"online":true,"battery":50,"t":1}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := wire.DecodeState(p)
		if err != nil {
			return
		}
		if s.Battery != nil && (*s.Battery < 0 || *s.Battery > 100) {
			t.Fatalf("accepted battery %d", *s.Battery)
		}
	})
}
