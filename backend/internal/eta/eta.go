// Package eta is Tawsil's travel-time model: courier speeds learned from
// observed movement per H3 cell and local hour of day, with a configured
// prior where too little has been seen.
//
// Travel time is the great-circle distance times a road detour factor,
// divided by the speed of the origin cell at the local hour (the origin is
// where a courier's next minutes are spent, and using one cell keeps the
// cost of a lookup to a single H3 index). Learned speeds are therefore
// "effective speeds along the road": consecutive fixes a few seconds apart
// follow the road, so their straight-line speed is the road speed.
//
// A Model is safe for concurrent use.
package eta

import (
	"github.com/tawsil/tawsil/backend/internal/geo"

	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"
	_ "time/tzdata" // Africa/Casablanca even on hosts without tzdata

	"github.com/tawsil/tawsil/shared/wire"
	"github.com/uber/h3-go/v4"
)

// Errors.
var (
	// ErrConfig: a configuration or snapshot value is out of range.
	ErrConfig = errors.New("invalid eta config")
)

// Sources reported by Speed.
const (
	SourceLearned = "learned"
	SourcePrior   = "prior"
)

// Config tunes the model. Zero values are not defaults: start from Default.
type Config struct {
	PriorKmh     float64       `json:"prior_kmh" yaml:"prior_kmh"`           // speed used where a cell-hour has too few samples
	DetourFactor float64       `json:"detour_factor" yaml:"detour_factor"`   // road distance / great-circle distance
	Resolution   int           `json:"resolution" yaml:"resolution"`         // H3 resolution of learned cells
	MinSamples   int           `json:"min_samples" yaml:"min_samples"`       // samples before a cell-hour is trusted
	MaxGap       time.Duration `json:"max_gap" yaml:"max_gap"`               // longer gaps between fixes are ignored (the path between is unknown)
	MinGap       time.Duration `json:"min_gap" yaml:"min_gap"`               // shorter gaps are ignored (GPS jitter dominates)
	StoppedMps   float64       `json:"stopped_mps" yaml:"stopped_mps"`       // below: the courier is stopped (waiting at a door), not travelling
	MaxMps       float64       `json:"max_mps" yaml:"max_mps"`               // above: implausible for a city courier (a GPS jump)
	MaxAccuracyM float64       `json:"max_accuracy_m" yaml:"max_accuracy_m"` // fixes with worse known accuracy are ignored
	Alpha        float64       `json:"alpha" yaml:"alpha"`                   // EWMA weight floor once 1/n drops below it
}

// Default returns the configuration for scooters in a Moroccan city.
func Default() Config {
	return Config{
		PriorKmh:     18,
		DetourFactor: 1.3,
		Resolution:   7,
		MinSamples:   30,
		MaxGap:       90 * time.Second,
		MinGap:       2 * time.Second,
		StoppedMps:   0.5,
		MaxMps:       25, // 90 km/h
		MaxAccuracyM: 50,
		Alpha:        0.02,
	}
}

// Validate reports the first out-of-range value.
func (c Config) Validate() error {
	switch {
	case !(c.PriorKmh > 0 && c.PriorKmh < 200):
		return fmt.Errorf("%w: prior_kmh %v", ErrConfig, c.PriorKmh)
	case !(c.DetourFactor >= 1 && c.DetourFactor <= 3):
		return fmt.Errorf("%w: detour_factor %v (want 1..3)", ErrConfig, c.DetourFactor)
	case c.Resolution < 0 || c.Resolution > 15:
		return fmt.Errorf("%w: resolution %d", ErrConfig, c.Resolution)
	case c.MinSamples < 1:
		return fmt.Errorf("%w: min_samples %d", ErrConfig, c.MinSamples)
	case c.MinGap < 0 || c.MaxGap <= c.MinGap:
		return fmt.Errorf("%w: gaps %v..%v", ErrConfig, c.MinGap, c.MaxGap)
	case !(c.StoppedMps >= 0 && c.MaxMps > c.StoppedMps):
		return fmt.Errorf("%w: speeds %v..%v m/s", ErrConfig, c.StoppedMps, c.MaxMps)
	case !(c.MaxAccuracyM > 0):
		return fmt.Errorf("%w: max_accuracy_m %v", ErrConfig, c.MaxAccuracyM)
	case !(c.Alpha > 0 && c.Alpha <= 1):
		return fmt.Errorf("%w: alpha %v", ErrConfig, c.Alpha)
	}
	return nil
}

// Outcome says what Observe did with a pair of fixes.
type Outcome int

// Outcomes of Observe. Only Recorded changes the model.
const (
	Recorded    Outcome = iota
	Stopped             // below StoppedMps: dwell, not travel
	Implausible         // above MaxMps: a GPS jump
	GapTooLong          // more than MaxGap apart
	GapTooShort         // less than MinGap apart, or not after prev
	Inaccurate          // a fix's known accuracy is worse than MaxAccuracyM
	InvalidFix          // a fix fails wire.CheckFix
)

func (o Outcome) String() string {
	switch o {
	case Recorded:
		return "recorded"
	case Stopped:
		return "stopped"
	case Implausible:
		return "implausible"
	case GapTooLong:
		return "gap_too_long"
	case GapTooShort:
		return "gap_too_short"
	case Inaccurate:
		return "inaccurate"
	case InvalidFix:
		return "invalid_fix"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

type stat struct {
	mps float64
	n   int
}

// Model is the learned speed model.
type Model struct {
	cfg      Config
	priorMps float64
	loc      *time.Location
	log      *slog.Logger

	mu    sync.RWMutex
	cells map[h3.Cell]*[24]stat
	// trusted counts, per local hour, the cell-hours with at least
	// MinSamples samples (under mu): at an hour with none, SpeedAt is the
	// prior everywhere and needs no H3 cell (a cgo call).
	trusted [24]int
}

// New returns an empty model. A nil logger discards.
func New(cfg Config, log *slog.Logger) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Model{
		cfg:      cfg,
		priorMps: cfg.PriorKmh / 3.6,
		loc:      Casablanca(),
		log:      log,
		cells:    make(map[h3.Cell]*[24]stat),
	}, nil
}

// Casablanca returns Morocco's time zone, or a fixed UTC+1 zone if the
// zone database cannot be read (it is embedded, so that is unexpected).
// Morocco is UTC+1 most of the year and UTC+0 during Ramadan.
func Casablanca() *time.Location {
	loc, err := time.LoadLocation("Africa/Casablanca")
	if err != nil {
		return time.FixedZone("UTC+1", 3600)
	}
	return loc
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Hour returns the local (Casablanca) hour of t, 0..23.
func (m *Model) Hour(t time.Time) int { return t.In(m.loc).Hour() }

// Observe learns from two consecutive fixes of one courier. Pairs that do
// not describe travel are ignored, and the Outcome says why: gaps shorter
// than MinGap (jitter) or longer than MaxGap (unknown path), speeds under
// StoppedMps (the courier waits: that time belongs to service time, not to
// travel) or over MaxMps (a GPS jump), fixes with poor accuracy. The sample
// goes to the cell of the midpoint at the local hour of prev.
//
// courierID is used only to log implausible jumps, which point at a device
// to look at.
func (m *Model) Observe(courierID string, prev, fix wire.Fix) Outcome {
	if wire.CheckFix(prev) != nil || wire.CheckFix(fix) != nil {
		return InvalidFix
	}
	if prev.Accuracy > m.cfg.MaxAccuracyM || fix.Accuracy > m.cfg.MaxAccuracyM {
		return Inaccurate
	}
	dt := fix.Time.Sub(prev.Time)
	switch {
	case dt < m.cfg.MinGap || dt <= 0:
		return GapTooShort
	case dt > m.cfg.MaxGap:
		return GapTooLong
	}
	mps := geo.DistanceLatLngM(prev.Lat, prev.Lng, fix.Lat, fix.Lng) / dt.Seconds()
	switch {
	case mps < m.cfg.StoppedMps:
		return Stopped
	case mps > m.cfg.MaxMps:
		m.log.Debug("eta: implausible speed", "courier_id", courierID, "mps", mps, "seq", fix.Seq)
		return Implausible
	}
	cell, err := h3.LatLngToCell(h3.NewLatLng((prev.Lat+fix.Lat)/2, (prev.Lng+fix.Lng)/2), m.cfg.Resolution)
	if err != nil {
		return InvalidFix
	}
	m.add(cell, m.Hour(prev.Time), mps)
	return Recorded
}

func (m *Model) add(cell h3.Cell, hour int, mps float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hs := m.cells[cell]
	if hs == nil {
		hs = new([24]stat)
		m.cells[cell] = hs
	}
	s := &hs[hour]
	s.n++
	if s.n == m.cfg.MinSamples {
		m.trusted[hour]++
	}
	// A running mean until 1/n falls below Alpha, then an exponentially
	// weighted mean: early samples all count, later ones track change.
	w := max(1/float64(s.n), m.cfg.Alpha)
	s.mps += w * (mps - s.mps)
}

// Speed returns the speed in m/s for a cell and local hour, whether it was
// learned or is the prior, and how many samples the cell-hour has.
// A cell-hour with fewer than MinSamples samples gives the prior.
func (m *Model) Speed(cell h3.Cell, hour int) (mps float64, source string, samples int) {
	if hour < 0 || hour > 23 {
		return m.priorMps, SourcePrior, 0
	}
	m.mu.RLock()
	var s stat
	if hs := m.cells[cell]; hs != nil {
		s = hs[hour]
	}
	m.mu.RUnlock()
	if s.n < m.cfg.MinSamples {
		return m.priorMps, SourcePrior, s.n
	}
	return s.mps, SourceLearned, s.n
}

// SpeedAt returns the speed in m/s at a point and time.
func (m *Model) SpeedAt(lat, lng float64, at time.Time) float64 {
	hour := m.Hour(at)
	m.mu.RLock()
	none := m.trusted[hour] == 0
	m.mu.RUnlock()
	if none {
		return m.priorMps
	}
	cell, err := h3.LatLngToCell(h3.NewLatLng(lat, lng), m.cfg.Resolution)
	if err != nil {
		return m.priorMps
	}
	mps, _, _ := m.Speed(cell, hour)
	return mps
}

// Pace returns seconds per great-circle metre starting at a point at a
// time, detour included: travel time = Pace × HaversineM. Callers that
// price many legs from one origin look the pace up once.
func (m *Model) Pace(lat, lng float64, at time.Time) float64 {
	return m.cfg.DetourFactor / m.SpeedAt(lat, lng, at)
}

// Travel returns the predicted travel time from one point to another
// starting at a time. It has the shape of the routing planner's TravelTimer
// over plain coordinates.
func (m *Model) Travel(fromLat, fromLng, toLat, toLng float64, at time.Time) time.Duration {
	sec := geo.DistanceLatLngM(fromLat, fromLng, toLat, toLng) * m.Pace(fromLat, fromLng, at)
	return time.Duration(sec * float64(time.Second))
}

// Point is a WGS84 position in degrees (the one geo.Point).
type Point = geo.Point

// TravelTime is Travel over Points.
func (m *Model) TravelTime(from, to Point, at time.Time) time.Duration {
	return m.Travel(from.Lat, from.Lng, to.Lat, to.Lng, at)
}

// CellSpeed is one learned cell-hour in a snapshot.
type CellSpeed struct {
	Cell    string  `json:"cell"` // H3 index, hex
	Hour    int     `json:"hour"` // local hour 0..23
	Mps     float64 `json:"mps"`
	Kmh     float64 `json:"kmh"` // for people reading GET /v1/eta/model
	Samples int     `json:"samples"`
	Trusted bool    `json:"trusted"` // Samples >= MinSamples: Speed returns it
}

// Snapshot is the inspectable, restorable state of a model.
type Snapshot struct {
	PriorKmh     float64     `json:"prior_kmh"`
	DetourFactor float64     `json:"detour_factor"`
	Resolution   int         `json:"resolution"`
	MinSamples   int         `json:"min_samples"`
	TimeZone     string      `json:"time_zone"`
	Cells        []CellSpeed `json:"cells"` // sorted by cell, then hour
}

// Snapshot returns the model's state, for GET /v1/eta/model and for
// persisting it across restarts.
func (m *Model) Snapshot() Snapshot {
	s := Snapshot{
		PriorKmh: m.cfg.PriorKmh, DetourFactor: m.cfg.DetourFactor,
		Resolution: m.cfg.Resolution, MinSamples: m.cfg.MinSamples, TimeZone: m.loc.String(),
	}
	m.mu.RLock()
	for c, hs := range m.cells {
		for h, st := range hs {
			if st.n == 0 {
				continue
			}
			s.Cells = append(s.Cells, CellSpeed{
				Cell: c.String(), Hour: h, Mps: st.mps, Kmh: st.mps * 3.6,
				Samples: st.n, Trusted: st.n >= m.cfg.MinSamples,
			})
		}
	}
	m.mu.RUnlock()
	sort.Slice(s.Cells, func(i, j int) bool {
		if s.Cells[i].Cell != s.Cells[j].Cell {
			return s.Cells[i].Cell < s.Cells[j].Cell
		}
		return s.Cells[i].Hour < s.Cells[j].Hour
	})
	return s
}

// Restore replaces the learned speeds with those of a snapshot. The
// snapshot's cells must be at the model's resolution; its prior and detour
// factor are informative only (configuration wins). On error nothing changes.
func (m *Model) Restore(s Snapshot) error {
	cells := make(map[h3.Cell]*[24]stat, len(s.Cells))
	for i, cs := range s.Cells {
		c := h3.CellFromString(cs.Cell)
		switch {
		case !c.IsValid():
			return fmt.Errorf("%w: snapshot cell %d %q is not an H3 cell", ErrConfig, i, cs.Cell)
		case c.Resolution() != m.cfg.Resolution:
			return fmt.Errorf("%w: snapshot cell %q resolution %d, model uses %d", ErrConfig, cs.Cell, c.Resolution(), m.cfg.Resolution)
		case cs.Hour < 0 || cs.Hour > 23:
			return fmt.Errorf("%w: snapshot cell %q hour %d", ErrConfig, cs.Cell, cs.Hour)
		case cs.Samples < 1 || math.IsNaN(cs.Mps) || cs.Mps < m.cfg.StoppedMps || cs.Mps > m.cfg.MaxMps:
			return fmt.Errorf("%w: snapshot cell %q hour %d: %v m/s from %d samples", ErrConfig, cs.Cell, cs.Hour, cs.Mps, cs.Samples)
		}
		hs := cells[c]
		if hs == nil {
			hs = new([24]stat)
			cells[c] = hs
		}
		hs[cs.Hour] = stat{mps: cs.Mps, n: cs.Samples}
	}
	var trusted [24]int
	for _, hs := range cells {
		for h := range hs {
			if hs[h].n >= m.cfg.MinSamples {
				trusted[h]++
			}
		}
	}
	m.mu.Lock()
	m.cells, m.trusted = cells, trusted
	m.mu.Unlock()
	return nil
}
