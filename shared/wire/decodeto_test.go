package wire_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// DecodeBatchTo decodes into the caller's buffer, message after message,
// what DecodeBatch decodes, whatever the buffer held, in every version.
func TestDecodeBatchToReusesBuffer(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	var buf []wire.Fix
	for n := 1; n <= 40; n += 13 {
		fixes := make([]wire.Fix, n)
		for i := range fixes {
			fixes[i] = wire.Fix{Seq: uint64(100 + i), Time: t0.Add(time.Duration(i) * time.Second), Lat: 33.5 + float64(i)/1e4, Lng: -7.6,
				Accuracy: 5, Speed: wire.Unknown, Heading: wire.Unknown, Battery: 80 - i}
		}
		epoch := []uint64{wire.EpochNone, wire.MinDeviceEpoch + 7}[n%2]
		for i := range fixes {
			fixes[i].Epoch = epoch
		}
		p1, err := wire.EncodeBatch(nil, fixes)
		if err != nil {
			t.Fatal(err)
		}
		payloads := [][]byte{p1}
		if epoch != wire.EpochNone {
			p3, err := wire.EncodeBatchVersion(nil, fixes, wire.PosVersion3)
			if err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, p3)
		}
		for _, p := range payloads {
			want, err := wire.DecodeBatch(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.DecodeBatchTo(buf, p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("version %d, %d fixes: DecodeBatchTo = %+v, want %+v", p[0], n, got, want)
			}
			if cap(buf) >= n && &got[0] != &buf[:1][0] {
				t.Fatalf("version %d, %d fixes: a new array though the buffer (cap %d) had room", p[0], n, cap(buf))
			}
			buf = got
		}
	}
}
