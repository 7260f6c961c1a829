package geo

import (
	"math"
	"testing"
)

func TestDistance(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lng1, lat2, lng2 float64
		want, tol              float64
	}{
		{name: "same point", lat1: 33.59, lng1: -7.61, lat2: 33.59, lng2: -7.61, want: 0, tol: 1e-9},
		{name: "one degree of latitude", lat1: 33, lng1: -7, lat2: 34, lng2: -7, want: 111195, tol: 1},
		// Casablanca Place Mohammed V to Rabat Bab Rouah: about 87 km as the crow flies.
		{name: "casablanca to rabat", lat1: 33.5925, lng1: -7.6186, lat2: 34.0155, lng2: -6.8352, want: 87000, tol: 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Distance(tt.lat1, tt.lng1, tt.lat2, tt.lng2); math.Abs(got-tt.want) > tt.tol {
				t.Fatalf("Distance = %v, want %v ± %v", got, tt.want, tt.tol)
			}
		})
	}
}

func TestBearingAndHeadingDelta(t *testing.T) {
	tests := []struct {
		name       string
		lat2, lng2 float64
		want       float64
	}{
		{name: "north", lat2: 1, lng2: 0, want: 0},
		{name: "east", lat2: 0, lng2: 1, want: 90},
		{name: "south", lat2: -1, lng2: 0, want: 180},
		{name: "west", lat2: 0, lng2: -1, want: 270},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Bearing(0, 0, tt.lat2, tt.lng2); HeadingDelta(got, tt.want) > 1e-9 {
				t.Fatalf("Bearing = %v, want %v", got, tt.want)
			}
		})
	}
	deltas := []struct{ give1, give2, want float64 }{{350, 10, 20}, {10, 350, 20}, {0, 180, 180}, {-90, 270, 0}, {720, 45, 45}}
	for _, d := range deltas {
		if got := HeadingDelta(d.give1, d.give2); math.Abs(got-d.want) > 1e-9 {
			t.Errorf("HeadingDelta(%v, %v) = %v, want %v", d.give1, d.give2, got, d.want)
		}
	}
}

func TestOffset(t *testing.T) {
	lat, lng := Offset(33.59, -7.61, 100, 100)
	if got := Distance(33.59, -7.61, lat, lng); math.Abs(got-141.42) > 0.5 {
		t.Fatalf("offset of (100 m N, 100 m E) is %v m away, want 141.4", got)
	}
}
