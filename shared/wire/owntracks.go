package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"time"
)

// MaxOwnTracksPayload bounds an OwnTracks JSON message.
const MaxOwnTracksPayload = 4 << 10

// ErrNotLocation is returned for OwnTracks messages other than locations
// (transition, waypoint, lwt, ...); they are ignored, not counted as malformed.
// OwnTracksType tells which one it was.
var ErrNotLocation = errors.New("owntracks message is not a location")

// The OwnTracks message types (https://owntracks.org/booklet/tech/json/).
// Only locations carry a fix; lwt (the apps' Last Will) means offline.
const (
	OwnTracksLocation = "location"
	OwnTracksLWT      = "lwt"
)

// ownTracksTypes are the _type values the apps send; anything else is
// reported as "other" so that a counter label cannot be chosen by a device.
var ownTracksTypes = map[string]bool{
	"beacon": true, "card": true, "cmd": true, "configuration": true, "encrypted": true, OwnTracksLocation: true,
	OwnTracksLWT: true, "request": true, "status": true, "steps": true, "transition": true, "waypoint": true, "waypoints": true,
}

// OwnTracksType returns the _type of an OwnTracks message, one of the
// documented types or "other" ("" when the payload is not a JSON object).
func OwnTracksType(p []byte) string {
	if len(p) > MaxOwnTracksPayload {
		return ""
	}
	var m struct {
		Type string `json:"_type"`
	}
	if err := json.Unmarshal(p, &m); err != nil {
		return ""
	}
	if ownTracksTypes[m.Type] {
		return m.Type
	}
	return "other"
}

// lenientNumber is a JSON number that the apps and their ports send in
// several forms: 85, 85.0, "85", "33.5". null and "" are absent.
type lenientNumber struct {
	v   float64
	set bool
}

func (n *lenientNumber) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			return nil
		}
		b = []byte(s)
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || !decimal(b) {
		return fmt.Errorf("%w: number %q", ErrField, b)
	}
	n.v, n.set = v, true
	return nil
}

// decimal reports whether b is a plain decimal number (what a JSON number
// may be), so that strings like "NaN", "Inf" or "0x1p3" are refused.
func decimal(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E' {
			return false
		}
	}
	return true
}

// ownTracksLocation is the OwnTracks app's location JSON. Fields Tawsil does
// not use (alt, vac, bs, conn, m, t, tid, inregions, SSID...) are ignored.
type ownTracksLocation struct {
	Type string        `json:"_type"`
	Lat  lenientNumber `json:"lat"`
	Lon  lenientNumber `json:"lon"`
	Tst  lenientNumber `json:"tst"`  // unix seconds; some ports send a fraction
	Acc  lenientNumber `json:"acc"`  // metres
	Vel  lenientNumber `json:"vel"`  // km/h
	Cog  lenientNumber `json:"cog"`  // degrees
	Batt lenientNumber `json:"batt"` // percent
}

// maxTstSeconds keeps DerivedSeq below 2^53.
const maxTstSeconds = 1 << 33

// DecodeOwnTracks turns an OwnTracks location message into a Fix. Numbers
// may come as JSON numbers of any form or as strings. OwnTracks carries no
// sequence number: Seq is DerivedSeq of the fix, so a replayed message is a
// duplicate while a second location within the same second is not. Its
// epoch is the reserved EpochOwnTracks, so these numbers (~1.9e15) never
// shadow an agent's.
func DecodeOwnTracks(p []byte) (Fix, error) {
	if len(p) > MaxOwnTracksPayload {
		return Fix{}, ErrTooLarge
	}
	var m ownTracksLocation
	if err := json.Unmarshal(p, &m); err != nil {
		return Fix{}, fmt.Errorf("owntracks json: %w", err)
	}
	if m.Type != OwnTracksLocation {
		return Fix{}, fmt.Errorf("%w: %q", ErrNotLocation, m.Type)
	}
	if !m.Lat.set || !m.Lon.set || !m.Tst.set {
		return Fix{}, fmt.Errorf("owntracks location: %w: lat, lon and tst are required", ErrField)
	}
	if !(m.Tst.v > 0 && m.Tst.v < maxTstSeconds) { // NaN fails too
		return Fix{}, fmt.Errorf("owntracks tst %v: %w", m.Tst.v, ErrField)
	}
	f := Fix{Epoch: EpochOwnTracks, Time: time.UnixMilli(int64(math.Round(m.Tst.v * 1000))).UTC(), Lat: m.Lat.v, Lng: m.Lon.v,
		Accuracy: Unknown, Speed: Unknown, Heading: Unknown, Battery: Unknown}
	if m.Acc.set && m.Acc.v >= 0 {
		f.Accuracy = m.Acc.v
	}
	if m.Vel.set && m.Vel.v >= 0 {
		f.Speed = m.Vel.v / 3.6
	}
	if m.Cog.set && m.Cog.v >= 0 {
		f.Heading = math.Mod(m.Cog.v, 360)
	}
	if m.Batt.set {
		if m.Batt.v < 0 || m.Batt.v > 100 || math.IsNaN(m.Batt.v) {
			return Fix{}, fmt.Errorf("owntracks batt %v: %w", m.Batt.v, ErrField)
		}
		f.Battery = int(math.Round(m.Batt.v))
	}
	if err := CheckFix(f); err != nil {
		return Fix{}, err
	}
	f.Seq = DerivedSeq(f)
	return f, nil
}

// DerivedSeq gives a sequence number to a fix from a protocol that has none
// (OwnTracks, Traccar Client): the device time's seconds shifted left 20
// bits, its milliseconds in the next 10, and 10 bits of a hash of the
// position. It grows with time, is the same for a re-sent copy of the same
// fix (so dedupe works), differs for two positions reported within the same
// second (1 in 1024 collides), and stays below 2^53 until the year 2242, so
// JSON readers that hold numbers as doubles read it exactly.
func DerivedSeq(f Fix) uint64 {
	h := fnv.New32a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], math.Float64bits(math.Round(f.Lat*1e6)))
	binary.LittleEndian.PutUint64(b[8:], math.Float64bits(math.Round(f.Lng*1e6)))
	h.Write(b[:])
	ms := f.Time.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	return uint64(ms/1000)<<20 | uint64(ms%1000)<<10 | uint64(h.Sum32()&0x3ff)
}
