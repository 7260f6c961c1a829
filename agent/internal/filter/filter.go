// Package filter decides which GPS samples become fixes worth sending: it
// drops the impossible ones (counted by reason) and thins the rest by time,
// distance and heading change, as the device profile says.
package filter

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/tawsil/tawsil/agent/internal/geo"
	"github.com/tawsil/tawsil/agent/internal/source"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/wire"
)

// Reason says why a sample was dropped.
type Reason string

// Drop reasons. They are the keys of Stats.Dropped and of the status
// endpoint's fixes.dropped.
const (
	NoFix      Reason = "no_fix"          // the receiver has no position
	LatRange   Reason = "lat_range"       // |lat| > 90
	LngRange   Reason = "lng_range"       // |lng| > 180
	NullIsland Reason = "null_island"     // (0, 0)
	BadField   Reason = "bad_field"       // NaN, negative speed, heading >= 360...
	Accuracy   Reason = "accuracy"        // worse than gps.max_accuracy_m
	Jump       Reason = "impossible_jump" // faster than gps.max_speed_mps from the last good fix
	Stale      Reason = "stale"           // older than gps.max_fix_age_s when read
	Future     Reason = "future"          // dated after it was read: a receiver clock fault
	Backwards  Reason = "time_backwards"  // not after the last good fix
)

// jumpResetAfter is how many consecutive jumps make the filter believe the
// new place rather than the old one: after a long tunnel or a reference
// fix that was itself wrong, the courier really is elsewhere.
const jumpResetAfter = 5

// maxFuture tolerates receiver clocks slightly ahead of the device clock.
const maxFuture = 5 * time.Second

// Stats counts what the filter saw.
type Stats struct {
	Read       uint64            // samples offered
	Accepted   uint64            // fixes to send
	Suppressed uint64            // valid, but not worth sending yet (thinning)
	Dropped    map[Reason]uint64 // invalid, by reason
}

// Filter is safe for concurrent use: Decide from the reading goroutine,
// SetProfile from the config handler, Stats from the status endpoint.
type Filter struct {
	mu    sync.Mutex
	p     profile.Profile
	good  *wire.Fix // last valid fix, the reference for jumps
	sent  *wire.Fix // last accepted fix, the reference for thinning
	jumps int
	stats Stats
}

// New returns a filter applying p.
func New(p profile.Profile) *Filter {
	return &Filter{p: p, stats: Stats{Dropped: make(map[Reason]uint64)}}
}

// SetProfile applies a new profile from the next sample on.
func (f *Filter) SetProfile(p profile.Profile) {
	f.mu.Lock()
	f.p = p
	f.mu.Unlock()
}

// Stats returns a copy of the counters.
func (f *Filter) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Dropped = make(map[Reason]uint64, len(f.stats.Dropped))
	for k, v := range f.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

// Decide returns whether the sample's fix should be sent. When it is not,
// reason is the drop reason, or "" for a valid fix thinned out.
func (f *Filter) Decide(s source.Sample) (send bool, reason Reason) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Read++
	if r := f.invalid(s); r != "" {
		f.stats.Dropped[r]++
		return false, r
	}
	fx := s.Fix
	f.good = &fx
	if !f.worthSending(fx) {
		f.stats.Suppressed++
		return false, ""
	}
	f.sent = &fx
	f.stats.Accepted++
	return true, ""
}

func (f *Filter) invalid(s source.Sample) Reason {
	if s.NoFix {
		return NoFix
	}
	fx := s.Fix
	if err := wire.CheckFix(fx); err != nil {
		switch {
		case errors.Is(err, wire.ErrLatRange):
			return LatRange
		case errors.Is(err, wire.ErrLngRange):
			return LngRange
		case errors.Is(err, wire.ErrNullIsland):
			return NullIsland
		default:
			return BadField
		}
	}
	gps := f.p.GPS
	if fx.Accuracy != wire.Unknown && fx.Accuracy > gps.MaxAccuracyM {
		return Accuracy
	}
	if !s.Read.IsZero() {
		age := s.Read.Sub(fx.Time)
		if age > seconds(gps.MaxFixAgeS) {
			return Stale
		}
		if age < -maxFuture {
			return Future
		}
	}
	if f.good == nil {
		return ""
	}
	dt := fx.Time.Sub(f.good.Time).Seconds()
	if dt <= 0 {
		return Backwards
	}
	d := geo.Distance(f.good.Lat, f.good.Lng, fx.Lat, fx.Lng)
	// Both fixes may be off by their accuracy: only the rest must be travelled.
	slack := known(f.good.Accuracy) + known(fx.Accuracy)
	if math.Max(0, d-slack)/dt > gps.MaxSpeedMPS {
		f.jumps++
		if f.jumps < jumpResetAfter {
			return Jump
		}
	}
	f.jumps = 0
	return ""
}

func (f *Filter) worthSending(fx wire.Fix) bool {
	if f.sent == nil {
		return true
	}
	fl := f.p.Filter
	factor := 1.0
	if fx.Battery != wire.Unknown && fx.Battery <= f.p.Battery.LowPercent {
		factor = f.p.Battery.LowIntervalFactor
	}
	dt := fx.Time.Sub(f.sent.Time)
	if dt < seconds(fl.MinIntervalS*factor) {
		return false
	}
	d := geo.Distance(f.sent.Lat, f.sent.Lng, fx.Lat, fx.Lng)
	still := d < fl.MinDistanceM
	if fx.Speed != wire.Unknown {
		still = fx.Speed < fl.StillSpeedMPS
	}
	if still {
		return dt >= seconds(fl.StillHeartbeatS*factor) || d >= fl.MinDistanceM
	}
	if d >= fl.MinDistanceM || dt >= seconds(fl.MaxIntervalS*factor) {
		return true
	}
	return fx.Heading != wire.Unknown && f.sent.Heading != wire.Unknown &&
		geo.HeadingDelta(fx.Heading, f.sent.Heading) >= fl.MinHeadingChangeDeg
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func known(v float64) float64 {
	if v == wire.Unknown {
		return 0
	}
	return v
}
