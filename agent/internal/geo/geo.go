// Package geo holds the spherical-Earth geometry the agent needs: distance,
// bearing and a destination point, accurate to well under a metre over the
// few kilometres between two fixes.
package geo

import "math"

// EarthRadius is the mean Earth radius in metres (IUGG).
const EarthRadius = 6371008.8

const rad = math.Pi / 180

// Distance is the great-circle (haversine) distance in metres.
func Distance(lat1, lng1, lat2, lng2 float64) float64 {
	φ1, φ2 := lat1*rad, lat2*rad
	dφ := φ2 - φ1
	dλ := (lng2 - lng1) * rad
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * EarthRadius * math.Asin(math.Min(1, math.Sqrt(a)))
}

// Bearing is the initial bearing from the first point to the second, in
// degrees clockwise from true north, in [0, 360).
func Bearing(lat1, lng1, lat2, lng2 float64) float64 {
	φ1, φ2 := lat1*rad, lat2*rad
	dλ := (lng2 - lng1) * rad
	y := math.Sin(dλ) * math.Cos(φ2)
	x := math.Cos(φ1)*math.Sin(φ2) - math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ)
	return Normalize(math.Atan2(y, x) / rad)
}

// Normalize maps any angle in degrees to [0, 360).
func Normalize(deg float64) float64 {
	d := math.Mod(deg, 360)
	if d < 0 {
		d += 360
	}
	if d >= 360 {
		d = 0
	}
	return d
}

// HeadingDelta is the smallest absolute difference between two headings, in
// degrees [0, 180].
func HeadingDelta(a, b float64) float64 {
	d := math.Abs(Normalize(a) - Normalize(b))
	if d > 180 {
		d = 360 - d
	}
	return d
}

// Offset moves a point by north and east metres (a local flat-Earth step,
// for metre-scale offsets such as GPS noise).
func Offset(lat, lng, north, east float64) (float64, float64) {
	return lat + north/EarthRadius/rad, lng + east/(EarthRadius*math.Cos(lat*rad))/rad
}

// Interpolate returns the point a fraction f in [0, 1] of the way from the
// first point to the second (linear in degrees: exact enough for street
// segments of a few hundred metres).
func Interpolate(lat1, lng1, lat2, lng2, f float64) (float64, float64) {
	return lat1 + (lat2-lat1)*f, lng1 + (lng2-lng1)*f
}
