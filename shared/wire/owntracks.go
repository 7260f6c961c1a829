package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxOwnTracksPayload bounds an OwnTracks JSON message.
const MaxOwnTracksPayload = 4 << 10

// ErrNotLocation is returned for OwnTracks messages other than locations
// (transition, waypoint, lwt, ...); they are ignored, not counted as malformed.
var ErrNotLocation = errors.New("owntracks message is not a location")

// ownTracksLocation is the OwnTracks app's location JSON
// (https://owntracks.org/booklet/tech/json/). Pointers tell absent from zero.
type ownTracksLocation struct {
	Type string   `json:"_type"`
	Lat  *float64 `json:"lat"`
	Lon  *float64 `json:"lon"`
	Tst  *int64   `json:"tst"`  // unix seconds
	Acc  *float64 `json:"acc"`  // metres
	Vel  *float64 `json:"vel"`  // km/h
	Cog  *float64 `json:"cog"`  // degrees
	Batt *int     `json:"batt"` // percent
	Tid  string   `json:"tid"`
}

// DecodeOwnTracks turns an OwnTracks location message into a Fix. OwnTracks
// carries no sequence number: Seq is the timestamp in seconds, so one device
// reports at most one fix per second and a replayed message is a duplicate.
func DecodeOwnTracks(p []byte) (Fix, error) {
	if len(p) > MaxOwnTracksPayload {
		return Fix{}, ErrTooLarge
	}
	var m ownTracksLocation
	if err := json.Unmarshal(p, &m); err != nil {
		return Fix{}, fmt.Errorf("owntracks json: %w", err)
	}
	if m.Type != "location" {
		return Fix{}, ErrNotLocation
	}
	if m.Lat == nil || m.Lon == nil || m.Tst == nil {
		return Fix{}, fmt.Errorf("owntracks location: %w: lat, lon and tst are required", ErrField)
	}
	if *m.Tst <= 0 || *m.Tst > math.MaxInt64/1000 {
		return Fix{}, fmt.Errorf("owntracks tst %d: %w", *m.Tst, ErrField)
	}
	f := Fix{Seq: uint64(*m.Tst), Time: time.Unix(*m.Tst, 0).UTC(), Lat: *m.Lat, Lng: *m.Lon,
		Accuracy: Unknown, Speed: Unknown, Heading: Unknown, Battery: Unknown}
	if m.Acc != nil {
		f.Accuracy = *m.Acc
	}
	if m.Vel != nil && *m.Vel >= 0 {
		f.Speed = *m.Vel / 3.6
	}
	if m.Cog != nil && *m.Cog >= 0 {
		f.Heading = math.Mod(*m.Cog, 360)
	}
	if m.Batt != nil {
		f.Battery = *m.Batt
	}
	if err := CheckFix(f); err != nil {
		return Fix{}, err
	}
	return f, nil
}
