package area

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func mustAreas(tb testing.TB, cfg Config) *Areas {
	tb.Helper()
	a, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

func TestLocateKnownPoints(t *testing.T) {
	a := mustAreas(t, Default())
	tests := []struct {
		name     string
		lat, lng float64
		want     string // "" = outside
	}{
		{"Casablanca Twin Center", 33.5892, -7.6325, "casablanca"},
		{"Casablanca Sidi Maarouf", 33.5350, -7.6450, "casablanca"},
		{"Casablanca Ain Sebaa", 33.6030, -7.5350, "casablanca"},
		{"Rabat Hassan Tower", 34.0240, -6.8225, "rabat"},
		{"Sale medina", 34.0370, -6.8010, "rabat"},
		{"Tanger medina", 35.7860, -5.8130, "tanger"},
		{"Tanger Boulevard Pasteur", 35.7780, -5.8130, "tanger"},
		{"Marrakech", 31.63, -8.00, ""},
		{"Fes", 34.0331, -5.0003, ""},
		{"Atlantic off Casablanca", 33.70, -7.65, ""},
		{"Mohammedia", 33.6866, -7.3830, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := a.Locate(tt.lat, tt.lng)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Locate = %q,%v, want %q", got, ok, tt.want)
			}
		})
	}
}

func TestCheckNamesThePoint(t *testing.T) {
	a := mustAreas(t, Default())
	_, err := a.Check(31.63, -8.00)
	if !errors.Is(err, ErrOutside) || !strings.Contains(err.Error(), "31.63000, -8.00000") {
		t.Errorf("Check(Marrakech) = %v", err)
	}
	for _, p := range [][2]float64{{math.NaN(), 1}, {91, 0}, {0, 0}} {
		if _, err := a.Check(p[0], p[1]); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("Check(%v) = %v, want ErrInvalidPoint", p, err)
		}
	}
	if city, err := a.Check(34.0240, -6.8225); err != nil || city != "rabat" {
		t.Errorf("Check(Hassan Tower) = %q, %v", city, err)
	}
}

func TestDefaultCoverage(t *testing.T) {
	a := mustAreas(t, Default())
	// Res-8 cells are about 0.74 km²; the urban areas are a few hundred km².
	for city, want := range map[string][2]int{"casablanca": {250, 600}, "rabat": {150, 450}, "tanger": {80, 250}} {
		if n := a.CellCount(city); n < want[0] || n > want[1] {
			t.Errorf("%s covered by %d cells, want %d..%d", city, n, want[0], want[1])
		}
	}
	if got := a.Cities(); len(got) != 3 || got[0] != "casablanca" {
		t.Errorf("Cities = %v", got)
	}
}

func TestResolutionConfigurable(t *testing.T) {
	cfg := Default()
	cfg.Resolution = 7
	a := mustAreas(t, cfg)
	if city, ok := a.Locate(33.5892, -7.6325); !ok || city != "casablanca" || a.Resolution() != 7 {
		t.Errorf("res 7 Locate = %q,%v", city, ok)
	}
	if a.CellCount("casablanca")*5 > mustAreas(t, Default()).CellCount("casablanca") {
		t.Error("res 7 should need about 7x fewer cells than res 8")
	}
}

func TestHole(t *testing.T) {
	square := func(lat, lng, d float64) [][2]float64 {
		return [][2]float64{{lng - d, lat - d}, {lng + d, lat - d}, {lng + d, lat + d}, {lng - d, lat + d}, {lng - d, lat - d}}
	}
	cfg := Config{Resolution: 8, Cities: []City{{Name: "x", Polygon: [][][2]float64{square(33.6, -7.6, 0.1), square(33.6, -7.6, 0.02)}}}}
	a := mustAreas(t, cfg)
	if _, ok := a.Locate(33.6, -7.6); ok {
		t.Error("point in the hole is served")
	}
	if _, ok := a.Locate(33.65, -7.65); !ok {
		t.Error("point in the ring is not served")
	}
}

func TestConfigRejects(t *testing.T) {
	sq := [][2]float64{{-7.7, 33.5}, {-7.5, 33.5}, {-7.5, 33.7}, {-7.7, 33.7}, {-7.7, 33.5}}
	tests := []struct {
		name string
		give Config
	}{
		{"no city", Config{Resolution: 8}},
		{"resolution", Config{Resolution: 13, Cities: []City{{Name: "a", Polygon: [][][2]float64{sq}}}}},
		{"no name", Config{Resolution: 8, Cities: []City{{Polygon: [][][2]float64{sq}}}}},
		{"twice", Config{Resolution: 8, Cities: []City{{Name: "a", Polygon: [][][2]float64{sq}}, {Name: "a", Polygon: [][][2]float64{sq}}}}},
		{"overlap", Config{Resolution: 8, Cities: []City{{Name: "a", Polygon: [][][2]float64{sq}}, {Name: "b", Polygon: [][][2]float64{sq}}}}},
		{"short ring", Config{Resolution: 8, Cities: []City{{Name: "a", Polygon: [][][2]float64{sq[:3]}}}}},
		{"lat/lng swapped out of range", Config{Resolution: 8, Cities: []City{{Name: "a", Polygon: [][][2]float64{{{33, -97}, {33, -95}, {34, -95}, {33, -97}}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.give); !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func BenchmarkLocate(b *testing.B) {
	a := mustAreas(b, Default())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.Locate(33.5892, -7.6325); !ok {
			b.Fatal("not served")
		}
	}
}
