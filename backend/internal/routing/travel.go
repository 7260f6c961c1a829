package routing

import (
	"github.com/tawsil/tawsil/backend/internal/geo"

	"time"
)

// TravelTimer predicts the driving time between two points when leaving at a
// given time. The ETA model plugs in here; Travel must be safe for concurrent
// use and must not return a negative duration.
type TravelTimer interface {
	Travel(from, to Point, at time.Time) time.Duration
}

// ConstantSpeed is a TravelTimer that stretches the great-circle distance by a
// detour factor (streets are not straight lines) and drives it at a constant
// speed. It ignores the time of day.
type ConstantSpeed struct {
	SpeedMPS     float64 // average door-to-door speed, metres per second
	DetourFactor float64 // road distance / great-circle distance, >= 1
}

// Defaults for ConstantSpeed: a scooter in Moroccan city traffic averages
// about 20 km/h door to door; street grids add about 30 % to the straight line.
const (
	DefaultSpeedMPS     = 20.0 / 3.6
	DefaultDetourFactor = 1.3
)

// DefaultTravel returns the ConstantSpeed model with the default figures.
func DefaultTravel() ConstantSpeed {
	return ConstantSpeed{SpeedMPS: DefaultSpeedMPS, DetourFactor: DefaultDetourFactor}
}

// Travel implements TravelTimer. A non-positive speed or a detour factor below
// 1 falls back to the default for that field.
func (c ConstantSpeed) Travel(from, to Point, _ time.Time) time.Duration {
	speed, detour := c.SpeedMPS, c.DetourFactor
	if !(speed > 0) {
		speed = DefaultSpeedMPS
	}
	if !(detour >= 1) {
		detour = DefaultDetourFactor
	}
	s := geo.DistanceM(from, to) * detour / speed
	return time.Duration(s * float64(time.Second))
}
