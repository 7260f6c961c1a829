package source

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/tawsil/tawsil/agent/internal/geo"
	"github.com/tawsil/tawsil/shared/wire"
)

// maxGPXBytes bounds a GPX file read into memory (a day of 1 s points is
// about 10 MB).
const maxGPXBytes = 64 << 20

// ErrGPX reports a GPX document the replay cannot use.
var ErrGPX = errors.New("invalid gpx")

type gpxDoc struct {
	XMLName xml.Name `xml:"gpx"`
	Tracks  []struct {
		Segments []struct {
			Points []gpxPoint `xml:"trkpt"`
		} `xml:"trkseg"`
	} `xml:"trk"`
}

type gpxPoint struct {
	Lat    float64  `xml:"lat,attr"`
	Lon    float64  `xml:"lon,attr"`
	Time   string   `xml:"time"`
	HDOP   *float64 `xml:"hdop"`
	Speed  *float64 `xml:"speed"`  // GPX 1.0, m/s
	Course *float64 `xml:"course"` // GPX 1.0, degrees
	Ext    struct {
		Speed  *float64 `xml:"speed"` // Garmin TrackPointExtension and OsmAnd style, m/s
		Course *float64 `xml:"course"`
		Accur  *float64 `xml:"accuracy"`
	} `xml:"extensions"`
}

// ParseGPX reads the track points of a GPX 1.0/1.1 document, in file order.
// Speed and heading come from the file when given, else from the previous
// point; accuracy from an accuracy extension or HDOP × UERE. Points without
// a time are refused: a replay needs them.
func ParseGPX(r io.Reader) ([]wire.Fix, error) {
	var doc gpxDoc
	dec := xml.NewDecoder(io.LimitReader(r, maxGPXBytes))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGPX, err)
	}
	var fixes []wire.Fix
	for _, trk := range doc.Tracks {
		for _, seg := range trk.Segments {
			for i, p := range seg.Points {
				t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(p.Time))
				if err != nil {
					return nil, fmt.Errorf("%w: point %d: time %q", ErrGPX, len(fixes), p.Time)
				}
				f := unknownFix()
				f.Time, f.Lat, f.Lng = t.UTC(), p.Lat, p.Lon
				switch {
				case p.Ext.Accur != nil:
					f.Accuracy = *p.Ext.Accur
				case p.HDOP != nil:
					f.Accuracy = *p.HDOP * UERE
				}
				switch {
				case p.Speed != nil:
					f.Speed = *p.Speed
				case p.Ext.Speed != nil:
					f.Speed = *p.Ext.Speed
				}
				switch {
				case p.Course != nil:
					f.Heading = *p.Course
				case p.Ext.Course != nil:
					f.Heading = *p.Ext.Course
				}
				if i > 0 {
					prev := fixes[len(fixes)-1]
					dt := f.Time.Sub(prev.Time).Seconds()
					d := geo.Distance(prev.Lat, prev.Lng, f.Lat, f.Lng)
					if f.Speed == wire.Unknown && dt > 0 {
						f.Speed = d / dt
					}
					if f.Heading == wire.Unknown && d > 1 {
						f.Heading = geo.Bearing(prev.Lat, prev.Lng, f.Lat, f.Lng)
					}
				}
				if math.IsNaN(f.Speed) || f.Speed < 0 {
					f.Speed = wire.Unknown
				}
				if math.IsNaN(f.Heading) || f.Heading < 0 || f.Heading >= 360 {
					f.Heading = wire.Unknown
				}
				if math.IsNaN(f.Accuracy) || f.Accuracy < 0 {
					f.Accuracy = wire.Unknown
				}
				fixes = append(fixes, f)
			}
		}
	}
	if len(fixes) == 0 {
		return nil, fmt.Errorf("%w: no track point", ErrGPX)
	}
	return fixes, nil
}

// GPX replays a GPX track.
type GPX struct {
	path  string
	speed float64
}

// NewGPX returns a replay of the track at path, speed times faster than
// recorded (0: as fast as possible).
func NewGPX(path string, speed float64) *GPX { return &GPX{path: path, speed: speed} }

// Finite is true.
func (g *GPX) Finite() bool { return true }

// Counters is empty: a bad GPX file is refused whole.
func (g *GPX) Counters() map[string]uint64 { return map[string]uint64{} }

// Run parses the file, then replays it.
func (g *GPX) Run(ctx context.Context, emit Emit) error {
	f, err := os.Open(g.path)
	if err != nil {
		return fmt.Errorf("gpx: %w", err)
	}
	fixes, err := ParseGPX(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("gpx %s: %w", g.path, err)
	}
	samples := make([]Sample, len(fixes))
	for i, fx := range fixes {
		samples[i] = Sample{Fix: fx}
	}
	return replay(ctx, samples, g.speed, emit)
}
