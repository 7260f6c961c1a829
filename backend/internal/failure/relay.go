package failure

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"io"
	"time"

	"gopkg.in/yaml.v3"
)

// Relay is a relay point: a partner shop that holds parcels for customers.
type Relay struct {
	ID   string  `yaml:"id"`
	Name string  `yaml:"name"`
	Lat  float64 `yaml:"lat"`
	Lng  float64 `yaml:"lng"`
	// Open and Close are daily opening hours "HH:MM" in the city's local
	// time; both empty means always open. Close before Open spans midnight.
	Open  string `yaml:"open,omitempty"`
	Close string `yaml:"close,omitempty"`
}

// ErrInvalidRelay is returned for a malformed relay point list.
var ErrInvalidRelay = errors.New("invalid relay points")

// ErrNoRelay is returned by NearestRelay when no relay point is open.
var ErrNoRelay = errors.New("no open relay point")

// ParseRelayPoints decodes and validates a YAML list of relay points.
func ParseRelayPoints(data []byte) (ps []Relay, err error) {
	defer func() {
		if p := recover(); p != nil {
			ps, err = nil, fmt.Errorf("%w: yaml: %v", ErrInvalidRelay, p)
		}
	}()
	if err := checkYAML(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRelay, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&ps); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRelay, err)
	}
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		switch {
		case p.ID == "" || seen[p.ID]:
			return nil, fmt.Errorf("%w: relay %d: empty or duplicate id %q", ErrInvalidRelay, i+1, p.ID)
		case !finite(p.Lat) || !finite(p.Lng) || p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180:
			return nil, fmt.Errorf("%w: relay %d %q: bad coordinates", ErrInvalidRelay, i+1, p.ID)
		case (p.Open == "") != (p.Close == ""):
			return nil, fmt.Errorf("%w: relay %d %q: set both open and close, or neither", ErrInvalidRelay, i+1, p.ID)
		}
		if p.Open != "" {
			if _, err := clock(p.Open); err != nil {
				return nil, fmt.Errorf("%w: relay %d %q: open: %w", ErrInvalidRelay, i+1, p.ID, err)
			}
			if _, err := clock(p.Close); err != nil {
				return nil, fmt.Errorf("%w: relay %d %q: close: %w", ErrInvalidRelay, i+1, p.ID, err)
			}
		}
		seen[p.ID] = true
	}
	return ps, nil
}

// clock parses "HH:MM" into minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("want HH:MM, got %q", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// OpenAt reports whether p is open at t, read on t's own clock (pass a time
// in the city's location). Malformed hours count as closed.
func (p Relay) OpenAt(t time.Time) bool {
	if p.Open == "" && p.Close == "" {
		return true
	}
	open, err1 := clock(p.Open)
	closing, err2 := clock(p.Close)
	if err1 != nil || err2 != nil {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if open <= closing {
		return m >= open && m < closing
	}
	return m >= open || m < closing // spans midnight
}

// NearestRelay returns the relay point closest (great circle) to (lat, lng)
// that is open at at (a zero at ignores opening hours), and its distance in
// metres. Ties go to the earlier point in the list.
func NearestRelay(points []Relay, lat, lng float64, at time.Time) (Relay, float64, error) {
	best, bestD := -1, 0.0
	for i, p := range points {
		if !at.IsZero() && !p.OpenAt(at) {
			continue
		}
		if d := geo.DistanceLatLngM(lat, lng, p.Lat, p.Lng); best < 0 || d < bestD {
			best, bestD = i, d
		}
	}
	if best < 0 {
		return Relay{}, 0, ErrNoRelay
	}
	return points[best], bestD, nil
}
