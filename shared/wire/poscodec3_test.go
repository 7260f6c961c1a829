package wire_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// TestEncodeBatchPicksVersion: EncodeBatch writes version 3 for an agent's
// fixes, version 2 when they do not fit it (optional fields that come and
// go), version 1 without an epoch; all decode to the same fixes.
func TestEncodeBatchPicksVersion(t *testing.T) {
	vs := mustVectors(t)
	byName := map[string][]wire.Fix{}
	for _, v := range vs {
		byName[v.Name] = v.Fixes
	}
	tests := []struct {
		name string
		give []wire.Fix
		want byte
	}{
		{"v1 without epoch", byName["batch_drain"], wire.PosVersion1},
		{"v2 when heading comes and goes", byName["v2_batch_drain"], wire.PosVersion2},
		{"v3 single", byName["v2_single_full"], wire.PosVersion3},
		{"v3 live batch", byName["v3_live_5"], wire.PosVersion3},
		{"v3 gaps", byName["v3_gaps_north"], wire.PosVersion3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := wire.EncodeBatch(nil, tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if p[0] != tt.want {
				t.Fatalf("version %d, want %d", p[0], tt.want)
			}
			mustRoundTrip(t, p, tt.give)
		})
	}
	if _, err := wire.EncodeBatchVersion(nil, byName["v2_batch_drain"], wire.PosVersion3); !errors.Is(err, wire.ErrVersion) {
		t.Fatalf("mixed fields as version 3: err %v, want ErrVersion", err)
	}
}

// TestV3SmallerThanV2: on every vector version 3 can carry, it is smaller.
func TestV3SmallerThanV2(t *testing.T) {
	for _, v := range mustVectors(t) {
		if v.Fixes[0].Epoch == wire.EpochNone {
			continue
		}
		v3, err3 := wire.EncodeBatchVersion(nil, v.Fixes, wire.PosVersion3)
		v2, err := wire.EncodeBatchVersion(nil, v.Fixes, wire.PosVersion2)
		if err != nil {
			t.Fatal(err)
		}
		if err3 != nil {
			continue
		}
		t.Logf("%s: %d fixes, v2 %d B, v3 %d B", v.Name, len(v.Fixes), len(v2), len(v3))
		if len(v3) >= len(v2) {
			t.Errorf("%s: v3 %d B, not smaller than v2 %d B", v.Name, len(v3), len(v2))
		}
	}
}

// TestV3RoundTripWalks: random rides of every shape round-trip through
// EncodeBatch, whatever version it picks, including wild jumps.
func TestV3RoundTripWalks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	versions := map[byte]int{}
	for trial := 0; trial < 3000; trial++ {
		n := 1 + rng.IntN(40)
		if trial%50 == 0 {
			n = wire.MaxBatch
		}
		f := wire.Fix{Epoch: wire.MinDeviceEpoch + uint64(rng.IntN(1e8)), Seq: 1 + uint64(rng.IntN(1e7)),
			Time: wire.EpochBase.Add(time.Duration(rng.Int64N(int64(5 * 365 * 24 * time.Hour)))), Lat: -89 + 178*rng.Float64(), Lng: -179 + 358*rng.Float64(),
			Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
		if rng.IntN(2) == 0 {
			f.Accuracy = math.Round(rng.Float64()*500) / 10
		}
		if rng.IntN(2) == 0 {
			f.Speed = math.Round(rng.Float64()*3000) / 100
		}
		if rng.IntN(2) == 0 {
			f.Heading = float64(rng.IntN(3600)) / 10
		}
		if rng.IntN(2) == 0 {
			f.Battery = rng.IntN(101)
		}
		wild := trial%7 == 0
		fixes := make([]wire.Fix, 0, n)
		for range n {
			fixes = append(fixes, f)
			f.Seq += 1 + uint64(rng.IntN(3)/2)
			f.Time = f.Time.Add(time.Second + time.Duration(rng.IntN(20)-10)*time.Millisecond)
			step := 1e-4
			if wild {
				step = 10
				f.Time = f.Time.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour))))
			}
			f.Lat = math.Max(-89.9, math.Min(89.9, f.Lat+step*rng.NormFloat64()))
			f.Lng = math.Max(-179.9, math.Min(179.9, f.Lng+step*rng.NormFloat64()))
			if f.Accuracy != wire.Unknown {
				f.Accuracy = math.Max(0, f.Accuracy+float64(rng.IntN(21)-10)/10)
			}
			if f.Speed != wire.Unknown {
				f.Speed = math.Max(0, f.Speed+float64(rng.IntN(41)-20)/100)
			}
			if f.Heading != wire.Unknown {
				f.Heading = math.Mod(f.Heading+360+float64(rng.IntN(201)-100)/10, 360)
				f.Heading = math.Mod(math.Round(f.Heading*10)/10, 360)
			}
			if f.Battery != wire.Unknown && rng.IntN(20) == 0 {
				f.Battery = max(0, f.Battery-1)
			}
		}
		p, err := wire.EncodeBatch(nil, fixes)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		versions[p[0]]++
		mustRoundTrip(t, p, fixes)
	}
	t.Logf("versions written: %v", versions)
	if versions[wire.PosVersion3] == 0 {
		t.Fatal("no batch took version 3")
	}
}

// TestDecodeV3Rejects: damaged version-3 payloads are refused whole.
func TestDecodeV3Rejects(t *testing.T) {
	var live []byte
	for _, v := range mustVectors(t) {
		if v.Name == "v3_live_5" {
			live = v.Payload
		}
	}
	if live == nil {
		t.Fatal("no v3_live_5 vector")
	}
	padded := append([]byte(nil), live...)
	padded[len(padded)-1] |= 0x80 // a padding bit set (the last byte has free bits in this vector)
	reserved := append([]byte{3, 5}, live[5:]...)
	negAcc := mustEncode(t, []wire.Fix{
		{Epoch: wire.MinDeviceEpoch, Seq: 1, Time: time.UnixMilli(1795000000000), Lat: 33, Lng: -7, Accuracy: 0.1, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
		{Epoch: wire.MinDeviceEpoch, Seq: 2, Time: time.UnixMilli(1795000001000), Lat: 33, Lng: -7, Accuracy: 0.2, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown},
	})
	// Turn the accuracy delta +1 (zz 2) into -2 (zz 3): a negative accuracy.
	negAcc = flipColumnValue(t, negAcc)
	tests := []struct {
		name string
		give []byte
		want error
	}{
		{"truncated", live[:len(live)-1], wire.ErrTruncated},
		{"trailing", append(append([]byte(nil), live...), 0), wire.ErrTrailing},
		{"padding", padded, wire.ErrTrailing},
		{"reserved epoch", reserved, wire.ErrEpoch},
		{"head only", []byte{3, 0x80, 0x80, 0x04}, wire.ErrTruncated},
		{"huge count", []byte{3, 0x80, 0x80, 0x04, 0xf0, 0xff, 0x03}, wire.ErrTooLarge},
		{"negative accuracy", negAcc, wire.ErrField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wire.DecodeBatch(tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBatchCount(t *testing.T) {
	for _, v := range mustVectors(t) {
		if n, ok := wire.BatchCount(v.Payload); !ok || n != len(v.Fixes) {
			t.Errorf("%s: BatchCount = %d, %v; want %d", v.Name, n, ok, len(v.Fixes))
		}
	}
	if _, ok := wire.BatchCount([]byte{9, 1}); ok {
		t.Error("unknown version counted")
	}
}

func mustEncode(tb testing.TB, fixes []wire.Fix) []byte {
	tb.Helper()
	p, err := wire.EncodeBatch(nil, fixes)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// flipColumnValue sets the lowest bit of the last value of a two-fix,
// accuracy-only version-3 payload's accuracy column (the payload's last
// column, whose value ends at the last set bit).
func flipColumnValue(tb testing.TB, p []byte) []byte {
	tb.Helper()
	q := append([]byte(nil), p...)
	// Columns: t, lat, lng (width 0 each: 6 bits), accuracy (width 2, value 2).
	// Bits 0-23 are the three zero widths and the accuracy width... find the
	// value's lowest bit: widths 4×6 = 24 bits, then the value at bit 24.
	bitStart := len(q) - 4 // the column stream: 24 + 2 bits = 4 bytes
	q[bitStart+3] |= 1     // value 2 (binary 10) becomes 3: zz -2
	if bytes.Equal(q, p) {
		tb.Fatal("payload unchanged")
	}
	return q
}

func mustRoundTrip(tb testing.TB, p []byte, want []wire.Fix) {
	tb.Helper()
	got, err := wire.DecodeBatch(p)
	if err != nil {
		tb.Fatalf("decode version %d: %v", p[0], err)
	}
	if len(got) != len(want) {
		tb.Fatalf("decoded %d fixes, want %d", len(got), len(want))
	}
	for i := range got {
		w := want[i]
		w.Time = w.Time.Truncate(time.Millisecond)
		if !fixEqual(got[i], w) {
			tb.Fatalf("version %d fix %d = %+v, want %+v", p[0], i, got[i], w)
		}
	}
}
