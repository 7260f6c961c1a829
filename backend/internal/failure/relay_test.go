package failure

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Test relay points: made-up ids at real Casablanca neighbourhood centres.
const relayYAML = `
- {id: test-maarif, name: Maarif test relay, lat: 33.5860, lng: -7.6330, open: "09:00", close: "21:00"}
- {id: test-ain-diab, name: Ain Diab test relay, lat: 33.5925, lng: -7.6790}
- {id: test-gauthier, name: Gauthier test relay, lat: 33.5920, lng: -7.6290, open: "20:00", close: "02:00"}
`

func TestNearestRelay(t *testing.T) {
	ps, err := ParseRelayPoints([]byte(relayYAML))
	if err != nil {
		t.Fatal(err)
	}
	day := func(h, m int) time.Time { return time.Date(2026, 3, 14, h, m, 0, 0, time.UTC) }
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"any time", time.Time{}, "test-maarif"},
		{"daytime", day(12, 0), "test-maarif"},
		{"evening: maarif closes at 21:00", day(21, 0), "test-gauthier"},
		{"after midnight", day(1, 30), "test-gauthier"},
		{"early morning", day(3, 0), "test-ain-diab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, d, err := NearestRelay(ps, dropLat, dropLng, tt.at)
			if err != nil || got.ID != tt.want || d <= 0 {
				t.Fatalf("NearestRelay = %s, %.0f m, %v; want %s", got.ID, d, err, tt.want)
			}
		})
	}
	if _, _, err := NearestRelay(ps[:1], dropLat, dropLng, day(23, 0)); !errors.Is(err, ErrNoRelay) {
		t.Fatalf("all closed: %v, want ErrNoRelay", err)
	}
	if _, _, err := NearestRelay(nil, dropLat, dropLng, time.Time{}); !errors.Is(err, ErrNoRelay) {
		t.Fatalf("empty list: %v, want ErrNoRelay", err)
	}
}

func TestParseRelayPointsErrors(t *testing.T) {
	tests := []struct{ name, give string }{
		{"duplicate id", "- {id: a, lat: 33.5, lng: -7.6}\n- {id: a, lat: 33.5, lng: -7.6}"},
		{"no id", "- {lat: 33.5, lng: -7.6}"},
		{"bad lat", "- {id: a, lat: 133.5, lng: -7.6}"},
		{"half hours", "- {id: a, lat: 33.5, lng: -7.6, open: \"09:00\"}"},
		{"bad clock", "- {id: a, lat: 33.5, lng: -7.6, open: \"9h\", close: \"21:00\"}"},
		{"unknown field", "- {id: a, lat: 33.5, lng: -7.6, phone: 1}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRelayPoints([]byte(tt.give)); !errors.Is(err, ErrInvalidRelay) {
				t.Fatalf("ParseRelayPoints = %v, want ErrInvalidRelay", err)
			}
		})
	}
}

func FuzzParseRelayPoints(f *testing.F) {
	f.Add([]byte(relayYAML))
	f.Add([]byte("- {id: a, lat: 33.5, lng: -7.6, open: \"23:59\", close: \"00:00\"}"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParseRelayPoints(data)
		if err != nil {
			return
		}
		p, _, err := NearestRelay(ps, 33.58, -7.62, time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC))
		if err == nil && !p.OpenAt(time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("nearest relay %q is closed", p.ID)
		}
	})
}

func TestYAMLAliasesRefused(t *testing.T) {
	bomb := "- id: a\n  lat: 33.5\n  lng: -7.6\n  name: &x lol\n- id: b\n  lat: 33.5\n  lng: -7.6\n  name: *x\n"
	if _, err := ParseRelayPoints([]byte(bomb)); !errors.Is(err, ErrInvalidRelay) || !strings.Contains(err.Error(), "aliases") {
		t.Fatalf("relay aliases: %v", err)
	}
	if _, err := Parse([]byte("max_attempts: &n 3\nrules:\n  - name: x\n    action: cancel\n")); !errors.Is(err, ErrInvalidRules) || !strings.Contains(err.Error(), "aliases") {
		t.Fatalf("rules anchors: %v", err)
	}
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	if _, err := ParseRelayPoints([]byte(deep)); !errors.Is(err, ErrInvalidRelay) {
		t.Fatalf("deep nesting: %v", err)
	}
}
