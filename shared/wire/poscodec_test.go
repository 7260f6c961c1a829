package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
	"github.com/tawsil/tawsil/shared/wire/golden"
)

var update = flag.Bool("update", false, "rewrite golden payloads from vectors.json")

func mustVectors(tb testing.TB) []golden.Vector {
	tb.Helper()
	vs, err := golden.Vectors()
	if err != nil && !*update {
		tb.Fatal(err)
	}
	return vs
}

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	for _, v := range mustVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			got, err := wire.EncodeBatchVersion(nil, v.Fixes, v.Version)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.Payload) {
				t.Fatalf("encode = %x\nwant     %x", got, v.Payload)
			}
			fixes, err := wire.DecodeBatch(v.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if len(fixes) != len(v.Fixes) {
				t.Fatalf("decoded %d fixes, want %d", len(fixes), len(v.Fixes))
			}
			for i := range fixes {
				if !fixEqual(fixes[i], v.Fixes[i]) {
					t.Errorf("fix %d = %+v, want %+v", i, fixes[i], v.Fixes[i])
				}
			}
		})
	}
}

// writeGolden regenerates the .bin files; only for deliberate format changes.
func writeGolden(t *testing.T) {
	t.Helper()
	vs, err := golden.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		p, err := wire.EncodeBatchVersion(nil, v.Fixes, v.Version)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("golden", "testdata", v.File), p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fixEqual(a, b wire.Fix) bool {
	near := func(x, y, eps float64) bool { return math.Abs(x-y) <= eps }
	return a.Epoch == b.Epoch && a.Seq == b.Seq && a.Time.Equal(b.Time) && near(a.Lat, b.Lat, 5e-7) && near(a.Lng, b.Lng, 5e-7) &&
		near(a.Accuracy, b.Accuracy, 0.05) && near(a.Speed, b.Speed, 0.005) && near(a.Heading, b.Heading, 0.05) && a.Battery == b.Battery
}

func TestDecodeRejects(t *testing.T) {
	vs := mustVectors(t)
	good := vs[2].Payload // batch_drain, version 1
	tests := []struct {
		name string
		give []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"version", append([]byte{9}, good[1:]...), wire.ErrVersion},
		{"v2 reserved epoch", append([]byte{2, 1}, good[1:]...), wire.ErrEpoch},
		{"v2 truncated epoch", []byte{2, 0x80}, wire.ErrTruncated},
		{"truncated", good[:len(good)-1], wire.ErrTruncated},
		{"trailing", append(append([]byte{}, good...), 0), wire.ErrTrailing},
		{"zero count", []byte{1, 0}, wire.ErrEmpty},
		{"huge count", []byte{1, 0xff, 0xff, 0x03, 0, 0, 0}, wire.ErrTooLarge},
		{"oversize", make([]byte, wire.MaxPosPayload+1), wire.ErrTooLarge},
		{"flags", []byte{1, 1, 0x80, 1, 0, 2, 2}, wire.ErrFlags},
		{"seq zero", []byte{1, 1, 0, 0, 0, 2, 2}, wire.ErrSeqOrder},
		{"null island", []byte{1, 1, 0, 1, 0, 0, 0}, wire.ErrNullIsland},
		{"lat range", append([]byte{1, 1, 0, 1, 0}, append(zz(91_000_000), 2)...), wire.ErrLatRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wire.DecodeBatch(tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func zz(v int64) []byte {
	var b [10]byte
	n := putVarint(b[:], v)
	return b[:n]
}

func putVarint(b []byte, v int64) int {
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	i := 0
	for ux >= 0x80 {
		b[i] = byte(ux) | 0x80
		ux >>= 7
		i++
	}
	b[i] = byte(ux)
	return i + 1
}

func TestEncodeRejects(t *testing.T) {
	ok := wire.Fix{Seq: 2, Time: time.UnixMilli(1), Lat: 1, Lng: 1, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
	nan := ok
	nan.Lat = math.NaN()
	back := ok
	back.Seq = 1
	tests := []struct {
		name string
		give []wire.Fix
		want error
	}{
		{"empty", nil, wire.ErrEmpty},
		{"nan", []wire.Fix{nan}, wire.ErrNaN},
		{"order", []wire.Fix{ok, back}, wire.ErrSeqOrder},
		{"too many", make([]wire.Fix, wire.MaxBatch+1), wire.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wire.EncodeBatch(nil, tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeMixedEpochs(t *testing.T) {
	f := wire.Fix{Epoch: wire.MinDeviceEpoch, Seq: 1, Time: time.UnixMilli(1), Lat: 1, Lng: 1, Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
	g := f
	g.Seq, g.Epoch = 2, wire.MinDeviceEpoch+1
	if _, err := wire.EncodeBatch(nil, []wire.Fix{f, g}); !errors.Is(err, wire.ErrEpoch) {
		t.Fatalf("err = %v, want ErrEpoch", err)
	}
}

// TestV1StillDecodes: the version-1 vectors (agents before epochs) decode
// with no epoch, and fixes in an epoch take version 2 or 3.
func TestV1StillDecodes(t *testing.T) {
	for _, v := range mustVectors(t) {
		fixes, err := wire.DecodeBatch(v.Payload)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if v.Payload[0] != v.Version {
			t.Fatalf("%s: version %d, want %d", v.Name, v.Payload[0], v.Version)
		}
		if (fixes[0].Epoch == wire.EpochNone) != (v.Version == wire.PosVersion1) {
			t.Fatalf("%s: version %d with epoch %d", v.Name, v.Payload[0], fixes[0].Epoch)
		}
	}
}

func TestBytesPerFix(t *testing.T) {
	ot, _, err := golden.OwnTracksSample()
	if err != nil {
		t.Fatal(err)
	}
	vs := mustVectors(t)
	single := len(vs[0].Payload)
	batch := vs[2]
	perFix := float64(len(batch.Payload)) / float64(len(batch.Fixes))
	t.Logf("owntracks %d B, single fix %d B, batched %.1f B/fix (version 1)", len(ot), single, perFix)
	for _, v := range vs {
		if v.Version == wire.PosVersion3 {
			t.Logf("version 3 %s: %d fixes, %d B, %.1f B/fix", v.Name, len(v.Fixes), len(v.Payload), float64(len(v.Payload))/float64(len(v.Fixes)))
		}
	}
	if single*5 > len(ot) {
		t.Fatalf("single-fix payload %d B is more than a fifth of the OwnTracks message (%d B)", single, len(ot))
	}
}

func FuzzDecodeBatch(f *testing.F) {
	for _, v := range mustVectors(f) {
		f.Add(v.Payload)
	}
	f.Add([]byte{1, 1, 0x0f, 1, 0, 2, 2, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		fixes, err := wire.DecodeBatch(p)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes to the same fixes.
		again, err := wire.EncodeBatch(nil, fixes)
		if err != nil {
			t.Fatalf("decoded fixes do not re-encode: %v", err)
		}
		fixes2, err := wire.DecodeBatch(again)
		if err != nil || len(fixes2) != len(fixes) {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range fixes {
			if !fixEqual(fixes[i], fixes2[i]) {
				t.Fatalf("fix %d changed in round trip: %+v vs %+v", i, fixes[i], fixes2[i])
			}
		}
	})
}
