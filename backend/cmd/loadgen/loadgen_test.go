package main

import (
	"errors"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

func TestRiderStaysPlausible(t *testing.T) {
	tests := []struct {
		name  string
		give  time.Duration // between fixes
		batch int
	}{
		{name: "1Hz", give: time.Second, batch: 1},
		{name: "burst", give: 10 * time.Millisecond, batch: 10},
		{name: "backlog", give: 30 * time.Second, batch: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRider(42, casablanca, 1000)
			now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
			var prev wire.Fix
			for i := range 2000 {
				now = now.Add(tt.give)
				fixes := r.batch(now, tt.batch)
				if _, err := wire.EncodeBatch(nil, fixes); err != nil {
					t.Fatalf("batch %d does not encode: %v", i, err)
				}
				for _, f := range fixes {
					if !casablanca.contains(f.Lat, f.Lng) {
						t.Fatalf("fix %d at %f,%f left Casablanca", f.Seq, f.Lat, f.Lng)
					}
					if prev.Seq != 0 {
						if f.Seq != prev.Seq+1 || f.Time.Before(prev.Time) {
							t.Fatalf("fix %d (%s) after %d (%s): want seq+1 and time not going back", f.Seq, f.Time, prev.Seq, prev.Time)
						}
						// The backend refuses more than 50 m/s (100 m within 2 s).
						dt := f.Time.Sub(prev.Time).Seconds()
						if d := geo.DistanceLatLngM(prev.Lat, prev.Lng, f.Lat, f.Lng); d > 12*max(dt, 0.001)+0.5 {
							t.Fatalf("fix %d moved %.1f m in %.3f s", f.Seq, d, dt)
						}
					}
					prev = f
				}
			}
			if prev.Seq != 1000+2000*uint64(tt.batch) {
				t.Errorf("last seq = %d, want %d", prev.Seq, 1000+2000*tt.batch)
			}
		})
	}
}

func TestRiderMoves(t *testing.T) {
	r := newRider(7, casablanca, 0)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	a := r.next(now)
	b := r.next(now.Add(60 * time.Second))
	if d := geo.DistanceLatLngM(a.Lat, a.Lng, b.Lat, b.Lng); d < 10 {
		t.Errorf("a minute of riding moved %.1f m", d)
	}
}

func TestCompare(t *testing.T) {
	ack := func(first, last uint64, ranges ...[2]uint64) sent {
		s := sent{CourierID: "c1", FirstSeq: first, MaxSeq: last, Ranges: ranges}
		for _, r := range ranges {
			s.Acked += int(r[1] - r[0] + 1)
		}
		return s
	}
	stored := func(seqs ...uint64) []storedFix {
		out := make([]storedFix, len(seqs))
		for i, q := range seqs {
			out[i] = storedFix{Seq: q}
		}
		return out
	}
	tests := []struct {
		name   string
		give   sent
		stored []storedFix
		want   courierCheck
		wantOK bool
	}{
		{name: "all", give: ack(11, 13, [2]uint64{11, 12}, [2]uint64{13, 13}), stored: stored(11, 12, 13),
			want: courierCheck{Sent: 3, Stored: 3, MaxSent: 13, MaxStored: 13}, wantOK: true},
		{name: "page overlap", give: ack(11, 12, [2]uint64{11, 12}), stored: stored(11, 12, 12),
			want: courierCheck{Sent: 2, Stored: 2, MaxSent: 12, MaxStored: 12}, wantOK: true},
		{name: "other run ignored", give: ack(11, 12, [2]uint64{11, 12}), stored: stored(3, 4, 11, 12),
			want: courierCheck{Sent: 2, Stored: 2, MaxSent: 12, MaxStored: 12}, wantOK: true},
		{name: "hole", give: ack(11, 13, [2]uint64{11, 13}), stored: stored(11, 13),
			want: courierCheck{Sent: 3, Stored: 2, Missing: 1, MaxSent: 13, MaxStored: 13}},
		{name: "tail lost", give: ack(11, 13, [2]uint64{11, 13}), stored: stored(11, 12),
			want: courierCheck{Sent: 3, Stored: 2, Missing: 1, MaxSent: 13, MaxStored: 12}},
		{name: "unacked stored", give: ack(11, 12, [2]uint64{11, 12}), stored: stored(11, 12, 13),
			want: courierCheck{Sent: 2, Stored: 3, Unknown: 1, MaxSent: 12, MaxStored: 13}},
		{name: "nothing stored", give: ack(11, 12, [2]uint64{11, 12}), stored: nil,
			want: courierCheck{Sent: 2, Missing: 2, MaxSent: 12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compare(tt.give, tt.stored)
			tt.want.CourierID = "c1"
			if got != tt.want {
				t.Errorf("compare = %+v, want %+v", got, tt.want)
			}
			if got.ok() != tt.wantOK {
				t.Errorf("ok = %t, want %t", got.ok(), tt.wantOK)
			}
		})
	}
	r := summarize([]courierCheck{compare(tests[0].give, tests[0].stored), compare(tests[3].give, tests[3].stored)})
	if r.zeroLoss() || r.Missing != 1 || len(r.BadCouriers) != 1 || r.Sent != 6 || r.Stored != 5 {
		t.Errorf("summarize = %+v", r)
	}
}

func TestQuantile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		give []time.Duration
		q    float64
		want time.Duration
	}{
		{name: "empty", give: nil, q: 0.5, want: 0},
		{name: "one", give: ms(7), q: 0.99, want: 7 * time.Millisecond},
		{name: "median odd", give: ms(5, 1, 3), q: 0.5, want: 3 * time.Millisecond},
		{name: "median even", give: ms(4, 1, 3, 2), q: 0.5, want: 2 * time.Millisecond},
		{name: "p99 of 100", give: ms(seq(100)...), q: 0.99, want: 99 * time.Millisecond},
		{name: "max", give: ms(9, 2, 30), q: 1, want: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.give, tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[n-1-i] = i + 1
	}
	return out
}

func TestVisible(t *testing.T) {
	f := wire.Fix{Seq: 5, Time: time.Date(2026, 3, 1, 9, 0, 10, 400e6, time.UTC), Lat: 33.58, Lng: -7.6}
	tests := []struct {
		name string
		give []nearCourier
		want bool
	}{
		{name: "absent", give: []nearCourier{{ID: "other", Lat: 33.58, Lng: -7.6, UpdatedAt: "2026-03-01T09:00:10Z"}}, want: false},
		{name: "previous fix", give: []nearCourier{{ID: "p", Lat: 33.5799, Lng: -7.6, UpdatedAt: "2026-03-01T09:00:09Z"}}, want: false},
		{name: "this fix", give: []nearCourier{{ID: "p", Lat: 33.58, Lng: -7.6, UpdatedAt: "2026-03-01T09:00:10Z"}}, want: true},
		{name: "later fix", give: []nearCourier{{ID: "p", Lat: 33.5801, Lng: -7.6, UpdatedAt: "2026-03-01T09:00:11Z"}}, want: true},
		{name: "same second elsewhere", give: []nearCourier{{ID: "p", Lat: 33.5801, Lng: -7.6, UpdatedAt: "2026-03-01T09:00:10Z"}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := visible(tt.give, "p", f); got != tt.want {
				t.Errorf("visible = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	const text = `# HELP tawsil_history_written_total Fixes written.
# TYPE tawsil_history_written_total counter
tawsil_history_written_total 1.5e+06
tawsil_ingest_fixes_total{result="accepted"} 120
tawsil_ingest_fixes_total{result="out_of_order"} 3
tawsil_ingest_rejections_total{reason="speed"} 2
tawsil_ingest_rejections_total{reason="too_old"} 5
`
	tests := []struct {
		name string
		give string
		want float64
	}{
		{name: "plain", give: "tawsil_history_written_total", want: 1.5e6},
		{name: "summed", give: "tawsil_ingest_rejections_total", want: 7},
		{name: "label", give: `tawsil_ingest_fixes_total{result="out_of_order"}`, want: 3},
		{name: "absent", give: "tawsil_nothing", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMetrics(strings.NewReader(text), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if m[tt.give] != tt.want {
				t.Errorf("%s = %v, want %v", tt.give, m[tt.give], tt.want)
			}
		})
	}
	if _, err := parseMetrics(strings.NewReader("tawsil_x abc\n"), "tawsil_x"); err == nil {
		t.Error("a non-number value was accepted")
	}
}

func TestDecodeCredentials(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantN   int
		wantErr bool
	}{
		{name: "ok", give: `[{"courier_id":"c1","mqtt_username":"c1","mqtt_password":"p","client_id":"dev-c1"}]`, wantN: 1},
		{name: "empty", give: `[]`, wantErr: true},
		{name: "not json", give: `{`, wantErr: true},
		{name: "bad id", give: `[{"courier_id":"a/b","client_id":"x"}]`, wantErr: true},
		{name: "no client id", give: `[{"courier_id":"c1"}]`, wantErr: true},
		{name: "twice", give: `[{"courier_id":"c1","client_id":"a"},{"courier_id":"c1","client_id":"b"}]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := decodeCredentials([]byte(tt.give))
			if tt.wantErr {
				if !errors.Is(err, ErrCredentials) {
					t.Fatalf("err = %v, want ErrCredentials", err)
				}
				return
			}
			if err != nil || len(cs) != tt.wantN {
				t.Fatalf("got %d credentials, %v; want %d", len(cs), err, tt.wantN)
			}
		})
	}
}

func TestFixCount(t *testing.T) {
	r := newRider(1, casablanca, 0)
	p, err := wire.EncodeBatch(nil, r.batch(time.Now(), 37))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		give   []byte
		want   int
		wantOK bool
	}{
		{name: "batch", give: p, want: 37, wantOK: true},
		{name: "empty", give: nil},
		{name: "version", give: append([]byte{9}, p[1:]...)},
		{name: "zero", give: []byte{wire.PosVersion, 0}},
		{name: "too many", give: []byte{wire.PosVersion, 0xf5, 0x03}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := fixCount(tt.give)
			if n != tt.want || ok != tt.wantOK {
				t.Errorf("fixCount = %d, %t; want %d, %t", n, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	env := func(string) string { return "" }
	tests := []struct {
		name    string
		give    []string
		wantErr bool
	}{
		{name: "defaults", give: nil},
		{name: "probe too fast", give: []string{"-probe-every", "100ms"}, wantErr: true},
		{name: "stray arg", give: []string{"extra"}, wantErr: true},
		{name: "unknown flag", give: []string{"-nope"}, wantErr: true},
		{name: "rounds", give: []string{"-rounds", "3"}},
		{name: "no rounds", give: []string{"-rounds", "0"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse("ingest", tt.give, env, &strings.Builder{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %t", err, tt.wantErr)
			}
			if err == nil && (c.Load.Broker != c.Broker || c.Load.validate() != nil) {
				t.Errorf("load options %+v not usable", c.Load)
			}
		})
	}
}

func FuzzDecodeCredentials(f *testing.F) {
	f.Add([]byte(`[{"courier_id":"c1","mqtt_username":"c1","mqtt_password":"p","client_id":"dev-c1"}]`))
	f.Add([]byte(`[{"courier_id":""}]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cs, err := decodeCredentials(raw)
		if err == nil && len(cs) == 0 {
			t.Fatal("no error and no credential")
		}
	})
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("tawsil_history_written_total 12\n")
	f.Add("tawsil_ingest_fixes_total{result=\"accepted\"} 1e3 1700000000\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = parseMetrics(strings.NewReader(text), "tawsil_history_written_total", `tawsil_ingest_fixes_total{result="accepted"}`)
	})
}

func BenchmarkRiderBatchEncode(b *testing.B) {
	r := newRider(3, casablanca, 0)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		now = now.Add(time.Second)
		var err error
		buf, err = wire.EncodeBatch(buf[:0], r.batch(now, 10))
		if err != nil {
			b.Fatal(err)
		}
	}
}

// Every round's lines are shown with the round's prefix, as they come, a
// line cut across writes included, and an unfinished last line once flushed.
func TestLinePrefixer(t *testing.T) {
	var out strings.Builder
	w := &linePrefixer{w: &out, prefix: "round 2/3: "}
	for _, s := range []string{"ceiling: a\nceil", "ing: b\n", "\n", "ingest: c"} {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := out.String(), "round 2/3: ceiling: a\nround 2/3: ceiling: b\nround 2/3: \n"; got != want {
		t.Fatalf("before flush: %q, want %q", got, want)
	}
	w.flush()
	if got, want := out.String(), "round 2/3: ceiling: a\nround 2/3: ceiling: b\nround 2/3: \nround 2/3: ingest: c\n"; got != want {
		t.Fatalf("after flush: %q, want %q", got, want)
	}
}
