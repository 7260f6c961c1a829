// Package geo is Tawsil's one point type and one great-circle distance:
// dispatch, the live index, routing, the ETA model and the order side all
// measure with DistanceM, so a distance one of them reports is the distance
// the others use.
package geo

import "math"

// Point is a WGS84 position in degrees.
type Point struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

// EarthRadiusM is the mean Earth radius (IUGG).
const EarthRadiusM = 6_371_008.8

// Vec is a point as a unit vector: what an index caches to measure many
// distances from one point without recomputing its trigonometry.
type Vec struct{ X, Y, Z float64 }

// VecOf returns the unit vector of a position in degrees.
func VecOf(lat, lng float64) Vec {
	const rad = math.Pi / 180
	sLat, cLat := math.Sincos(lat * rad)
	sLng, cLng := math.Sincos(lng * rad)
	return Vec{cLat * cLng, cLat * sLng, sLat}
}

// VecDistanceM is the great-circle distance between two unit vectors, from
// the chord length: exact on the sphere and well conditioned for the short
// distances of a city (unlike acos of the dot product).
func VecDistanceM(a, b Vec) float64 {
	dx, dy, dz := a.X-b.X, a.Y-b.Y, a.Z-b.Z
	h := math.Sqrt(dx*dx+dy*dy+dz*dz) / 2
	if h > 1 {
		h = 1
	}
	return 2 * EarthRadiusM * math.Asin(h)
}

// DistanceM is the great-circle distance in metres between a and b.
func DistanceM(a, b Point) float64 {
	return VecDistanceM(VecOf(a.Lat, a.Lng), VecOf(b.Lat, b.Lng))
}

// DistanceLatLngM is DistanceM over plain coordinates.
func DistanceLatLngM(lat1, lng1, lat2, lng2 float64) float64 {
	return VecDistanceM(VecOf(lat1, lng1), VecOf(lat2, lng2))
}
