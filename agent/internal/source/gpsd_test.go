package source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tawsil/tawsil/shared/wire"
)

// fakeGPSD serves capture to each client after it sends ?WATCH, then
// closes the connection. It records the commands it received.
func fakeGPSD(tb testing.TB, capture []byte) (addr string, watches <-chan string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	got := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cmd, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				got <- cmd
				c.Write(capture)
			}()
		}
	}()
	return ln.Addr().String(), got
}

func TestGPSDSource(t *testing.T) {
	capture, err := os.ReadFile(filepath.Join("testdata", "gpsd-casablanca.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	addr, watches := fakeGPSD(t, capture)
	src, err := Open("gpsd:"+addr, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []Sample
	errStop := errors.New("enough")
	err = src.Run(ctx, func(s Sample) error {
		got = append(got, s)
		if len(got) == 10 { // two sessions: the source reconnects after EOF
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Run = %v, want the emit error", err)
	}
	if cmd := <-watches; cmd != gpsdWatch {
		t.Fatalf("sent %q, want %q", cmd, gpsdWatch)
	}
	want := []struct {
		noFix         bool
		lat, lng      float64
		acc, spd, hdg float64
	}{
		{noFix: true},
		{lat: 33.589213333, lng: -7.632416667, acc: 9.65, spd: 7.512, hdg: 48.3},
		{lat: 33.589265, lng: -7.632346667, acc: 9.58, spd: 8.103, hdg: 47.9},
		{lat: 33.589318333, lng: -7.632271667, acc: math.Hypot(5.902, 7.330), spd: 8.45, hdg: 48.8},
		{lat: 33.589372, lng: -7.632196, acc: 9.41, spd: wire.Unknown, hdg: wire.Unknown},
	}
	for i, w := range want {
		s := got[i]
		if s.NoFix != w.noFix {
			t.Fatalf("sample %d NoFix = %v, want %v", i, s.NoFix, w.noFix)
		}
		if w.noFix {
			continue
		}
		f := s.Fix
		if f.Lat != w.lat || f.Lng != w.lng || math.Abs(f.Accuracy-w.acc) > 1e-9 || f.Speed != w.spd || f.Heading != w.hdg || f.Battery != wire.Unknown {
			t.Errorf("sample %d = %+v, want %+v", i, f, w)
		}
	}
	if c := src.Counters(); c[SkipGPSDJSON] < 1 || c[SkipGPSDNoTime] < 1 {
		t.Fatalf("counters %v: want the bad line and the undated TPV counted", c)
	}
}

func TestDecodeGPSD(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantOK  bool
		wantErr error
	}{
		{name: "sky", give: `{"class":"SKY","hdop":1.2}`},
		{name: "no fix", give: `{"class":"TPV","mode":1}`, wantOK: true},
		{name: "fix", give: `{"class":"TPV","mode":2,"time":"2025-06-12T09:14:06.000Z","lat":33.5,"lon":-7.6}`, wantOK: true},
		{name: "bad time", give: `{"class":"TPV","mode":2,"time":"yesterday","lat":33.5,"lon":-7.6}`, wantErr: ErrGPSDReport},
		{name: "no time", give: `{"class":"TPV","mode":3,"lat":33.5,"lon":-7.6}`, wantErr: ErrGPSDNoTime},
		{name: "not json", give: `{"class":`, wantErr: ErrGPSDReport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok, err := DecodeGPSD([]byte(tt.give))
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecodeGPSD = ok %v err %v, want ok %v err %v", ok, err, tt.wantOK, tt.wantErr)
			}
		})
	}
}

func FuzzDecodeGPSD(f *testing.F) {
	capture, err := os.ReadFile(filepath.Join("testdata", "gpsd-casablanca.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range bytes.Split(capture, []byte("\n")) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s, ok, err := DecodeGPSD(line)
		if err != nil && ok {
			t.Fatal("ok with an error")
		}
		if ok && !s.NoFix && s.Fix.Time.IsZero() {
			t.Fatalf("fix without time from %q", line)
		}
		if ok && !s.NoFix {
			if err := wire.CheckFix(s.Fix); err != nil && !errors.Is(err, wire.ErrLatRange) && !errors.Is(err, wire.ErrLngRange) && !errors.Is(err, wire.ErrNullIsland) && !errors.Is(err, wire.ErrNaN) {
				t.Fatalf("optional fields out of range from %q: %v", line, err)
			}
		}
	})
}
