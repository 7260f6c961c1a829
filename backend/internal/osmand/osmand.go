// Package osmand decodes the OsmAnd protocol as the Traccar Client apps send
// it over HTTP: query or form parameters (id, lat, lon, timestamp, speed,
// bearing, altitude, accuracy, batt, ...), or the JSON body of Traccar
// Client 9 and later ({"device_id":..., "location":{"coords":{...}}}).
// It turns a report into a wire.Fix; it knows nothing of HTTP or storage.
package osmand

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// MaxBody bounds a JSON report (a batch of locations included).
const MaxBody = 64 << 10

// MaxLocations bounds the locations of one JSON report.
const MaxLocations = 100

// KnotsToMPS converts the query form's speed (knots, as Traccar expects) to m/s.
const KnotsToMPS = 1852.0 / 3600.0

// Errors of the decoders.
var (
	ErrMalformed = errors.New("osmand report malformed") // a field that is not a number or a time, missing lat/lon
	ErrInvalid   = errors.New("osmand report without a valid fix")
)

// Report is one decoded request: the device identifier it names and its fixes
// (epoch wire.EpochOsmAnd, Seq derived with wire.DerivedSeq).
type Report struct {
	DeviceID string
	Fixes    []wire.Fix
}

// DecodeQuery decodes the query/form form. now dates a report without a
// timestamp (Traccar does the same). A report with valid=false is ErrInvalid.
func DecodeQuery(v url.Values, now time.Time) (Report, error) {
	r := Report{DeviceID: first(v, "id", "deviceid")}
	if b := strings.ToLower(v.Get("valid")); b == "false" || b == "0" {
		return r, ErrInvalid
	}
	f := wire.Fix{Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
	lat, lon := v.Get("lat"), v.Get("lon")
	if loc := v.Get("location"); lat == "" && lon == "" && loc != "" {
		lat, lon, _ = strings.Cut(loc, ",")
	}
	var err error
	if f.Lat, err = number(lat); err != nil {
		return r, fmt.Errorf("%w: lat: %w", ErrMalformed, err)
	}
	if f.Lng, err = number(lon); err != nil {
		return r, fmt.Errorf("%w: lon: %w", ErrMalformed, err)
	}
	if f.Time, err = timestamp(v.Get("timestamp"), now); err != nil {
		return r, err
	}
	if s := v.Get("speed"); s != "" {
		kn, err := number(s)
		if err != nil {
			return r, fmt.Errorf("%w: speed: %w", ErrMalformed, err)
		}
		if kn >= 0 {
			f.Speed = kn * KnotsToMPS
		}
	}
	if s := first(v, "bearing", "heading"); s != "" {
		h, err := number(s)
		if err != nil {
			return r, fmt.Errorf("%w: bearing: %w", ErrMalformed, err)
		}
		if h >= 0 {
			f.Heading = math.Mod(h, 360)
		}
	}
	if s := v.Get("altitude"); s != "" {
		if _, err := number(s); err != nil { // Tawsil does not store altitude, but a broken one is a broken report
			return r, fmt.Errorf("%w: altitude: %w", ErrMalformed, err)
		}
	}
	if s := v.Get("accuracy"); s != "" {
		a, err := number(s)
		if err != nil {
			return r, fmt.Errorf("%w: accuracy: %w", ErrMalformed, err)
		}
		if a >= 0 {
			f.Accuracy = a
		}
	}
	if s := v.Get("batt"); s != "" {
		b, err := number(s)
		if err != nil || b < 0 || b > 100 {
			return r, fmt.Errorf("%w: batt %q", ErrMalformed, s)
		}
		f.Battery = int(math.Round(b))
	}
	if err := finish(&f); err != nil {
		return r, err
	}
	r.Fixes = []wire.Fix{f}
	return r, nil
}

// jsonReport is the Traccar Client 9+ body (the transistorsoft background
// geolocation format): one location or an array of them.
type jsonReport struct {
	DeviceID string          `json:"device_id"`
	Location json.RawMessage `json:"location"`
}

type jsonLocation struct {
	Timestamp string `json:"timestamp"` // RFC 3339
	Coords    struct {
		Latitude  *float64 `json:"latitude"`
		Longitude *float64 `json:"longitude"`
		Accuracy  *float64 `json:"accuracy"` // metres
		Speed     *float64 `json:"speed"`    // m/s, -1 unknown
		Heading   *float64 `json:"heading"`  // degrees, -1 unknown
		Altitude  *float64 `json:"altitude"`
	} `json:"coords"`
	Battery struct {
		Level      *float64 `json:"level"` // 0..1, -1 unknown
		IsCharging bool     `json:"is_charging"`
	} `json:"battery"`
}

// DecodeJSON decodes the JSON body form.
func DecodeJSON(p []byte) (Report, error) {
	if len(p) > MaxBody {
		return Report{}, fmt.Errorf("%w: body over %d bytes", ErrMalformed, MaxBody)
	}
	var root jsonReport
	if err := json.Unmarshal(p, &root); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	r := Report{DeviceID: root.DeviceID}
	var locs []jsonLocation
	switch raw := strings.TrimSpace(string(root.Location)); {
	case strings.HasPrefix(raw, "["):
		if err := json.Unmarshal(root.Location, &locs); err != nil {
			return r, fmt.Errorf("%w: location: %w", ErrMalformed, err)
		}
	case strings.HasPrefix(raw, "{"):
		var l jsonLocation
		if err := json.Unmarshal(root.Location, &l); err != nil {
			return r, fmt.Errorf("%w: location: %w", ErrMalformed, err)
		}
		locs = []jsonLocation{l}
	default:
		return r, fmt.Errorf("%w: no location", ErrMalformed)
	}
	if len(locs) == 0 || len(locs) > MaxLocations {
		return r, fmt.Errorf("%w: %d locations", ErrMalformed, len(locs))
	}
	for _, l := range locs {
		c := l.Coords
		if c.Latitude == nil || c.Longitude == nil {
			return r, fmt.Errorf("%w: latitude and longitude are required", ErrMalformed)
		}
		t, err := time.Parse(time.RFC3339Nano, l.Timestamp)
		if err != nil {
			return r, fmt.Errorf("%w: timestamp %q", ErrMalformed, l.Timestamp)
		}
		f := wire.Fix{Time: t.UTC(), Lat: *c.Latitude, Lng: *c.Longitude,
			Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
		if c.Accuracy != nil && *c.Accuracy >= 0 {
			f.Accuracy = *c.Accuracy
		}
		if c.Speed != nil && *c.Speed >= 0 {
			f.Speed = *c.Speed
		}
		if c.Heading != nil && *c.Heading >= 0 {
			f.Heading = math.Mod(*c.Heading, 360)
		}
		if b := l.Battery.Level; b != nil && *b >= 0 {
			if *b > 1 {
				return r, fmt.Errorf("%w: battery level %v", ErrMalformed, *b)
			}
			f.Battery = int(math.Round(*b * 100))
		}
		if err := finish(&f); err != nil {
			return r, err
		}
		r.Fixes = append(r.Fixes, f)
	}
	return r, nil
}

// finish checks a fix and gives it its derived sequence number.
func finish(f *wire.Fix) error {
	if err := wire.CheckFix(*f); err != nil {
		return err
	}
	f.Time = f.Time.Truncate(time.Millisecond)
	f.Epoch, f.Seq = wire.EpochOsmAnd, wire.DerivedSeq(*f)
	return nil
}

func first(v url.Values, keys ...string) string {
	for _, k := range keys {
		if s := v.Get(k); s != "" {
			return s
		}
	}
	return ""
}

// number parses a finite decimal number.
func number(s string) (float64, error) {
	s = strings.TrimSpace(s)
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return v, nil
}

// timestamp reads the forms Traccar accepts: unix seconds (possibly with a
// fraction), unix milliseconds, RFC 3339, or "2006-01-02 15:04:05" (UTC).
func timestamp(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return now.UTC(), nil
	}
	if v, err := number(s); err == nil {
		if v <= 0 || v >= 1<<53 {
			return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, s)
		}
		if v > math.MaxInt32 { // milliseconds, as Traccar reads them
			return time.UnixMilli(int64(v)).UTC(), nil
		}
		return time.UnixMilli(int64(math.Round(v * 1000))).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, s)
}
