package wire_test

import (
	"errors"
	"strings"
	"testing"
	"time"

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

// TestDecodeOwnTracksLenient: numbers in the forms the apps and their ports
// send (batt 85.0, a fractional tst, lat/lon and acc as strings) decode.
func TestDecodeOwnTracksLenient(t *testing.T) {
	msgs, err := golden.OwnTracksMessages()
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeOwnTracks(msgs["location_lenient"])
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Fix{Epoch: wire.EpochOwnTracks, Time: time.UnixMilli(1795000120750).UTC(), Lat: 33.5912, Lng: -7.6021, Accuracy: 8,
		Speed: 30 / 3.6, Heading: 180, Battery: 85}
	want.Seq = wire.DerivedSeq(want)
	if !fixEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, give := range []string{
		`{"_type":"location","lat":33.5,"lon":-7.6,"tst":"1795000000","batt":"85"}`,
		`{"_type":"location","lat":33.5,"lon":-7.6,"tst":1.795e9,"batt":85.4,"acc":null,"vel":""}`,
	} {
		if _, err := wire.DecodeOwnTracks([]byte(give)); err != nil {
			t.Errorf("%s: %v", give, err)
		}
	}
}

// TestDecodeOwnTracksEveryType decodes one message of every documented
// _type: locations give a fix, the rest ErrNotLocation with their type.
func TestDecodeOwnTracksEveryType(t *testing.T) {
	msgs, err := golden.OwnTracksMessages()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for name, p := range msgs {
		typ := wire.OwnTracksType(p)
		types[typ] = true
		_, err := wire.DecodeOwnTracks(p)
		switch {
		case strings.HasPrefix(name, "location"):
			if err != nil || typ != wire.OwnTracksLocation {
				t.Errorf("%s: type %q, err %v", name, typ, err)
			}
		case !errors.Is(err, wire.ErrNotLocation) || typ != name:
			t.Errorf("%s: type %q, err %v; want ErrNotLocation and type %q", name, typ, err, name)
		}
	}
	for _, want := range []string{"beacon", "card", "cmd", "configuration", "encrypted", "location", "lwt", "request",
		"status", "steps", "transition", "waypoint", "waypoints"} {
		if !types[want] {
			t.Errorf("no fixture of _type %q", want)
		}
	}
	if got := wire.OwnTracksType([]byte(`{"_type":"x\u0000evil"}`)); got != "other" {
		t.Errorf("unknown type reported as %q, want other", got)
	}
}

// TestDerivedSeqSameSecond: two locations within one second get two
// sequence numbers (a second location is not a duplicate), a re-sent copy
// gets the same one, and later fixes get larger ones.
func TestDerivedSeqSameSecond(t *testing.T) {
	a, errA := wire.DecodeOwnTracks([]byte(`{"_type":"location","lat":33.5001,"lon":-7.6001,"tst":1795000000}`))
	b, errB := wire.DecodeOwnTracks([]byte(`{"_type":"location","lat":33.5002,"lon":-7.6001,"tst":1795000000}`))
	a2, errA2 := wire.DecodeOwnTracks([]byte(`{"tst":1795000000,"lat":33.5001,"lon":-7.6001,"_type":"location","batt":50}`))
	c, errC := wire.DecodeOwnTracks([]byte(`{"_type":"location","lat":33.5001,"lon":-7.6001,"tst":1795000001}`))
	if err := errors.Join(errA, errB, errA2, errC); err != nil {
		t.Fatal(err)
	}
	if a.Seq == b.Seq {
		t.Fatalf("two positions in the same second share seq %d", a.Seq)
	}
	if a.Seq != a2.Seq {
		t.Fatalf("a re-sent fix got a new seq: %d, %d", a.Seq, a2.Seq)
	}
	if c.Seq <= a.Seq || c.Seq <= b.Seq {
		t.Fatalf("a later fix has a smaller seq: %d after %d, %d", c.Seq, a.Seq, b.Seq)
	}
	late := wire.Fix{Time: time.Date(2240, 1, 1, 0, 0, 0, 999e6, time.UTC), Lat: 90, Lng: 180}
	if s := wire.DerivedSeq(late); s >= 1<<53 {
		t.Fatalf("seq %d is not exact in a JSON double", s)
	}
}

func FuzzDecodeOwnTracks(f *testing.F) {
	p, _, err := golden.OwnTracksSample()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add([]byte(`{"_type":"location","lat":1e308,"lon":-1e308,"tst":9223372036854775807}`))
	msgs, err := golden.OwnTracksMessages()
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range msgs {
		f.Add(p)
	}
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
