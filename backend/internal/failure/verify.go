package failure

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"slices"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// VerifyConfig sets the GPS evidence thresholds.
type VerifyConfig struct {
	// RadiusM: a fix counts as "at the door" when its distance to the drop-off,
	// less its reported accuracy, is within this radius. Accuracy is credited
	// because a courier inside a building reads tens of metres off; fixes
	// worse than MaxAccuracyM are not used at all, so the credit is bounded.
	RadiusM float64 `yaml:"radius_m"`
	// MinDwell is the continuous presence needed (the longest run of in-range
	// fixes whose gaps are all at most MaxGap).
	MinDwell time.Duration `yaml:"min_dwell"`
	// MaxGap is the longest gap between two in-range fixes still counted as
	// presence. A still courier's agent reports every still_heartbeat_s (120 s
	// in the default device profile), so it must be above that.
	MaxGap time.Duration `yaml:"max_gap"`
	// MaxAccuracyM: fixes reporting a worse accuracy are ignored. Fixes of
	// unknown accuracy are used without credit.
	MaxAccuracyM float64 `yaml:"max_accuracy_m"`
	// ApproachRadiusM is the radius for PresenceApproach reasons.
	ApproachRadiusM float64 `yaml:"approach_radius_m"`
	// MinCallAttempts is the number of calls needed for CUSTOMER_UNAVAILABLE.
	MinCallAttempts int `yaml:"min_call_attempts"`
	// Window: only fixes from Window before the report (and up to one minute
	// after, for clock skew) are considered.
	Window time.Duration `yaml:"window"`
}

// DefaultVerifyConfig returns the default thresholds.
func DefaultVerifyConfig() VerifyConfig {
	return VerifyConfig{
		RadiusM:         75,
		MinDwell:        120 * time.Second,
		MaxGap:          150 * time.Second,
		MaxAccuracyM:    50,
		ApproachRadiusM: 300,
		MinCallAttempts: 2,
		Window:          20 * time.Minute,
	}
}

// ErrInvalidConfig is returned by VerifyConfig.Validate.
var ErrInvalidConfig = errors.New("invalid verification config")

// Validate checks the thresholds.
func (c VerifyConfig) Validate() error {
	switch {
	case !(c.RadiusM > 0):
		return fmt.Errorf("%w: radius_m must be > 0", ErrInvalidConfig)
	case c.MinDwell < 0:
		return fmt.Errorf("%w: min_dwell must be >= 0", ErrInvalidConfig)
	case c.MaxGap <= 0:
		return fmt.Errorf("%w: max_gap must be > 0", ErrInvalidConfig)
	case !(c.MaxAccuracyM > 0):
		return fmt.Errorf("%w: max_accuracy_m must be > 0", ErrInvalidConfig)
	case !(c.ApproachRadiusM >= c.RadiusM):
		return fmt.Errorf("%w: approach_radius_m must be >= radius_m", ErrInvalidConfig)
	case c.MinCallAttempts < 0:
		return fmt.Errorf("%w: min_call_attempts must be >= 0", ErrInvalidConfig)
	case c.Window <= 0:
		return fmt.Errorf("%w: window must be > 0", ErrInvalidConfig)
	}
	return nil
}

// Evidence is what the courier's report and the GPS history say.
type Evidence struct {
	Reason       Reason
	At           time.Time  // when the failure was reported
	DropLat      float64    // the drop-off point
	DropLng      float64    //
	Fixes        []wire.Fix // the courier's fixes around At, any order, duplicates allowed
	CallAttempts int        // calls placed to the customer through the platform
}

// Verification is the outcome of Verify with the figures that explain it.
type Verification struct {
	Verified     bool
	Required     Presence // the evidence the reason needs
	Reason       string   // why, in words
	DwellS       float64  // longest continuous presence within RadiusM, seconds
	ClosestM     float64  // closest usable fix to the drop-off, metres; -1 without any
	UsedFixes    int      // fixes inside the window with a usable accuracy
	InRangeFixes int      // of those, within RadiusM (accuracy credited)
	CallAttempts int
}

// Verify checks ev against c. It is a pure function.
func Verify(c VerifyConfig, ev Evidence) Verification {
	v := Verification{Required: ev.Reason.Presence(), ClosestM: -1, CallAttempts: ev.CallAttempts}
	fixes := usableFixes(c, ev)
	v.UsedFixes = len(fixes)

	closestEff := math.Inf(1)
	var runStart, last time.Time
	inRun := false
	for _, f := range fixes {
		d := geo.DistanceLatLngM(ev.DropLat, ev.DropLng, f.Lat, f.Lng)
		if v.ClosestM < 0 || d < v.ClosestM {
			v.ClosestM = d
		}
		eff := d
		if f.Accuracy > 0 {
			eff = math.Max(0, d-f.Accuracy)
		}
		closestEff = math.Min(closestEff, eff)
		if eff > c.RadiusM {
			inRun = false
			continue
		}
		v.InRangeFixes++
		if !inRun || f.Time.Sub(last) > c.MaxGap {
			runStart, inRun = f.Time, true
		}
		last = f.Time
		v.DwellS = math.Max(v.DwellS, last.Sub(runStart).Seconds())
	}

	switch v.Required {
	case PresenceNone:
		v.Verified, v.Reason = true, fmt.Sprintf("%s needs no GPS evidence", ev.Reason)
	case PresenceApproach:
		switch {
		case len(fixes) == 0:
			v.Reason = "no usable fix in the window"
		case closestEff > c.ApproachRadiusM:
			v.Reason = fmt.Sprintf("never within %.0f m of the drop-off (closest %.0f m)", c.ApproachRadiusM, v.ClosestM)
		default:
			v.Verified, v.Reason = true, fmt.Sprintf("came within %.0f m of the drop-off", v.ClosestM)
		}
	case PresenceAtDoor:
		switch {
		case len(fixes) == 0:
			v.Reason = "no usable fix in the window"
		case v.InRangeFixes == 0:
			v.Reason = fmt.Sprintf("never within %.0f m of the drop-off (closest %.0f m)", c.RadiusM, v.ClosestM)
		case v.DwellS < c.MinDwell.Seconds():
			v.Reason = fmt.Sprintf("within %.0f m for %.0f s, need %.0f s", c.RadiusM, v.DwellS, c.MinDwell.Seconds())
		case ev.Reason == CustomerUnavailable && ev.CallAttempts < c.MinCallAttempts:
			v.Reason = fmt.Sprintf("%d call attempt(s), need %d", ev.CallAttempts, c.MinCallAttempts)
		default:
			v.Verified, v.Reason = true, fmt.Sprintf("within %.0f m for %.0f s", c.RadiusM, v.DwellS)
		}
	}
	return v
}

// usableFixes returns ev's valid fixes in the window with a usable accuracy,
// one per sequence number, sorted by time.
func usableFixes(c VerifyConfig, ev Evidence) []wire.Fix {
	from, to := ev.At.Add(-c.Window), ev.At.Add(time.Minute)
	out := make([]wire.Fix, 0, len(ev.Fixes))
	for _, f := range ev.Fixes {
		if wire.CheckFix(f) != nil || f.Time.Before(from) || f.Time.After(to) || f.Accuracy > c.MaxAccuracyM {
			continue
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b wire.Fix) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Seq, b.Seq))
	})
	return slices.CompactFunc(out, func(a, b wire.Fix) bool { return a.Epoch == b.Epoch && a.Seq == b.Seq && a.Seq != 0 })
}
