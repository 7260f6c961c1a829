package failure

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// A drop-off in Maarif, Casablanca.
const dropLat, dropLng = 33.5869, -7.6318

var reported = time.Date(2026, 3, 14, 19, 30, 0, 0, time.UTC)

// metresPerDegLat converts a northward offset; accurate to well under 1 %.
const metresPerDegLat = 111195.0

// fixAt is a fix secs seconds before the report, north metres from the drop-off.
func fixAt(seq uint64, secsBefore, north, accuracy float64) wire.Fix {
	return wire.Fix{Seq: seq, Time: reported.Add(-time.Duration(secsBefore * float64(time.Second))),
		Lat: dropLat + north/metresPerDegLat, Lng: dropLng, Accuracy: accuracy, Speed: 0, Heading: wire.Unknown, Battery: 80}
}

// still returns fixes every step seconds from start to end seconds before the
// report, all north metres away.
func still(seq0 uint64, start, end, step, north, acc float64) []wire.Fix {
	var out []wire.Fix
	for s := start; s >= end; s -= step {
		out = append(out, fixAt(seq0, s, north, acc))
		seq0++
	}
	return out
}

func TestVerify(t *testing.T) {
	cfg := DefaultVerifyConfig()
	tests := []struct {
		name      string
		reason    Reason
		fixes     []wire.Fix
		calls     int
		want      bool
		wantDwell float64
		wantWhy   string
	}{
		{"at the door", CustomerRefused, still(1, 180, 0, 60, 10, 5), 0, true, 180, "within 75 m for 180 s"},
		{"just outside the radius", CustomerRefused, still(1, 180, 0, 60, 81, 5), 0, false, 0, "never within 75 m"},
		{"just inside with accuracy credit", CustomerRefused, still(1, 180, 0, 60, 79, 5), 0, true, 180, ""},
		{"accuracy credit inside a building", BusinessClosed, still(1, 180, 0, 60, 110, 40), 0, true, 180, ""},
		{"unknown accuracy gets no credit", BusinessClosed, still(1, 180, 0, 60, 80, wire.Unknown), 0, false, 0, "never within"},
		{"unknown accuracy inside", BusinessClosed, still(1, 180, 0, 60, 74, wire.Unknown), 0, true, 180, ""},
		{"poor accuracy ignored", CustomerRefused, still(1, 180, 0, 60, 10, 80), 0, false, 0, "no usable fix"},
		{"dwell just short", AddressNotFound, []wire.Fix{fixAt(1, 119, 10, 5), fixAt(2, 60, 10, 5), fixAt(3, 0, 10, 5)}, 0, false, 119, "for 119 s, need 120 s"},
		{"still heartbeat gap counts", CODNotAvailable, []wire.Fix{fixAt(1, 140, 10, 5), fixAt(2, 0, 10, 5)}, 0, true, 140, ""},
		{"gap above max breaks presence", CODNotAvailable, []wire.Fix{fixAt(1, 320, 10, 5), fixAt(2, 160, 10, 5), fixAt(3, 0, 10, 5)}, 0, false, 0, "for 0 s"},
		{"leaving breaks the run", CustomerRefused, []wire.Fix{fixAt(1, 150, 10, 5), fixAt(2, 90, 10, 5), fixAt(3, 60, 400, 5), fixAt(4, 30, 10, 5), fixAt(5, 0, 10, 5)}, 0, false, 60, "for 60 s"},
		{"fixes outside the window", CustomerRefused, still(1, 3600, 1500, 60, 10, 5), 0, false, 0, "no usable fix"},
		{"unavailable without calls", CustomerUnavailable, still(1, 180, 0, 60, 10, 5), 1, false, 180, "1 call attempt(s), need 2"},
		{"unavailable with calls", CustomerUnavailable, still(1, 180, 0, 60, 10, 5), 2, true, 180, ""},
		{"damaged needs nothing", Damaged, nil, 0, true, 0, "needs no GPS evidence"},
		{"unsafe needs nothing", UnsafeLocation, still(1, 180, 0, 60, 2000, 5), 0, true, 0, ""},
		{"inaccessible approached", AddressInaccessible, still(1, 60, 0, 30, 250, 10), 0, true, 0, "came within"},
		{"inaccessible far away", AddressInaccessible, still(1, 60, 0, 30, 500, 10), 0, false, 0, "never within 300 m"},
		{"no fixes", CustomerRefused, nil, 0, false, 0, "no usable fix"},
		{"invalid fixes ignored", CustomerRefused, []wire.Fix{{Seq: 1, Time: reported, Lat: math.NaN(), Lng: dropLng, Accuracy: 5}}, 0, false, 0, "no usable fix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verify(cfg, Evidence{Reason: tt.reason, At: reported, DropLat: dropLat, DropLng: dropLng, Fixes: tt.fixes, CallAttempts: tt.calls})
			if v.Verified != tt.want || math.Abs(v.DwellS-tt.wantDwell) > 0.01 || !strings.Contains(v.Reason, tt.wantWhy) {
				t.Fatalf("Verify = %+v, want verified %t dwell %v reason containing %q", v, tt.want, tt.wantDwell, tt.wantWhy)
			}
		})
	}
}

func TestVerifyOrderAndDuplicates(t *testing.T) {
	cfg := DefaultVerifyConfig()
	fixes := still(1, 240, 0, 60, 20, 8)
	ev := Evidence{Reason: CustomerRefused, At: reported, DropLat: dropLat, DropLng: dropLng, Fixes: fixes}
	want := Verify(cfg, ev)

	shuffled := []wire.Fix{fixes[3], fixes[0], fixes[4], fixes[1], fixes[2], fixes[0], fixes[3]}
	ev.Fixes = shuffled
	got := Verify(cfg, ev)
	if got != want {
		t.Fatalf("shuffled, duplicated fixes: %+v, want %+v", got, want)
	}
	if got.UsedFixes != 5 || math.Abs(got.ClosestM-20) > 0.5 {
		t.Fatalf("used %d fixes, closest %.1f m; want 5 and 20 m", got.UsedFixes, got.ClosestM)
	}
}

func TestVerifyConfigValidate(t *testing.T) {
	if err := DefaultVerifyConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := DefaultVerifyConfig()
	bad.ApproachRadiusM = 10
	if err := bad.Validate(); err == nil {
		t.Fatal("approach radius below radius accepted")
	}
}

func TestPresence(t *testing.T) {
	tests := []struct {
		give Reason
		want Presence
	}{
		{CustomerUnavailable, PresenceAtDoor}, {CustomerRefused, PresenceAtDoor}, {AddressNotFound, PresenceAtDoor},
		{BusinessClosed, PresenceAtDoor}, {CODNotAvailable, PresenceAtDoor}, {AddressInaccessible, PresenceApproach},
		{Damaged, PresenceNone}, {UnsafeLocation, PresenceNone}, {CourierIncident, PresenceNone},
	}
	for _, tt := range tests {
		if got := tt.give.Presence(); got != tt.want {
			t.Errorf("%s.Presence() = %s, want %s", tt.give, got, tt.want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	cfg := DefaultVerifyConfig()
	ev := Evidence{Reason: CustomerUnavailable, At: reported, DropLat: dropLat, DropLng: dropLng,
		Fixes: still(1, 1200, 0, 5, 30, 8), CallAttempts: 2} // 20 minutes at 5 s
	b.ReportAllocs()
	for b.Loop() {
		if v := Verify(cfg, ev); !v.Verified {
			b.Fatal(v.Reason)
		}
	}
}
