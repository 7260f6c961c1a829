package geo

import (
	"math"
	"testing"
)

func TestDistanceM(t *testing.T) {
	tests := []struct {
		name string
		a, b Point
		want float64 // metres, from the haversine formula on the same sphere
		tol  float64
	}{
		{"same point", Point{Lat: 33.5731, Lng: -7.5898}, Point{Lat: 33.5731, Lng: -7.5898}, 0, 1e-9},
		{"one metre north", Point{Lat: 33.5731, Lng: -7.5898}, Point{Lat: 33.5731 + 1/111194.93, Lng: -7.5898}, 1, 1e-3},
		{"Casablanca-Rabat", Point{Lat: 33.5731, Lng: -7.5898}, Point{Lat: 34.0209, Lng: -6.8416}, haversine(33.5731, -7.5898, 34.0209, -6.8416), 1e-6},
		{"antipodes", Point{Lat: 0, Lng: 0}, Point{Lat: 0, Lng: 180}, math.Pi * EarthRadiusM, 1e-6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceM(tt.a, tt.b)
			if math.Abs(got-tt.want) > tt.tol*max(1, tt.want) {
				t.Errorf("DistanceM = %.9f, want %.9f", got, tt.want)
			}
			if back := DistanceM(tt.b, tt.a); back != got {
				t.Errorf("not symmetric: %v and %v", got, back)
			}
			if ll := DistanceLatLngM(tt.a.Lat, tt.a.Lng, tt.b.Lat, tt.b.Lng); ll != got {
				t.Errorf("DistanceLatLngM = %v, DistanceM = %v", ll, got)
			}
		})
	}
}

func haversine(lat1, lng1, lat2, lng2 float64) float64 {
	const rad = math.Pi / 180
	s1, s2 := math.Sin((lat2-lat1)*rad/2), math.Sin((lng2-lng1)*rad/2)
	h := s1*s1 + math.Cos(lat1*rad)*math.Cos(lat2*rad)*s2*s2
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(h))
}

func BenchmarkDistanceM(b *testing.B) {
	p, q := Point{Lat: 33.5731, Lng: -7.5898}, Point{Lat: 33.59, Lng: -7.61}
	b.ReportAllocs()
	for b.Loop() {
		_ = DistanceM(p, q)
	}
}
