// Package wire defines the messages that travel between the Tawsil agent and
// backend over MQTT, and their codecs.
//
// Positions travel as a compact, versioned binary batch (see EncodeBatch):
// mobile data costs couriers money. Low-volume messages (state, tasks,
// config) are JSON.
package wire

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Unknown marks an optional numeric field of a Fix that the source did not give.
const Unknown = -1

// Fix is one position report of one device.
type Fix struct {
	Epoch    uint64    // sequence epoch (see Epoch constants); 0: a version-1 payload, no epoch
	Seq      uint64    // per-device sequence number within its epoch, strictly increasing, from 1
	Time     time.Time // device time; millisecond precision on the wire
	Lat      float64   // degrees WGS84; 1e-6 degree (≈ 0.11 m) on the wire
	Lng      float64   // degrees WGS84; 1e-6 degree on the wire
	Accuracy float64   // horizontal accuracy in metres (0.1 m), or Unknown
	Speed    float64   // metres per second (0.01 m/s), or Unknown
	Heading  float64   // degrees clockwise from true north [0, 360) (0.1°), or Unknown
	Battery  int       // percent 0..100, or Unknown
}

// Sequence epochs. A device's sequence numbers count within an epoch: a new
// outbox, a reinstalled app or a new phone starts a new epoch (and counts
// from 1 again), so a restarted counter is never mistaken for duplicates.
// Fixes are identified by (courier, epoch, seq). Within one epoch the
// sequence number orders fixes; across epochs only device time does.
//
// Epochs below MinDeviceEpoch are reserved for sources whose numbers are
// derived from the fix (DerivedSeq: OwnTracks, Traccar Client), so their
// numbers, ~1.8e15, can never shadow an agent's.
const (
	EpochNone      = 0 // version-1 payloads (agents before epochs)
	EpochOwnTracks = 1 // OwnTracks locations: Seq is DerivedSeq
	EpochOsmAnd    = 2 // Traccar Client (OsmAnd protocol) over HTTP: Seq is DerivedSeq
	// MinDeviceEpoch is the smallest epoch an agent may use. Agents take
	// the seconds since EpochBase at the creation of their outbox.
	MinDeviceEpoch = 1 << 16
)

// EpochBase is the origin of agent epochs (2025-01-01T00:00:00Z).
var EpochBase = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// NewDeviceEpoch returns the epoch of an outbox created at t: seconds since
// EpochBase (about 4 bytes on the wire until 2029), never below MinDeviceEpoch.
func NewDeviceEpoch(t time.Time) uint64 {
	s := t.Sub(EpochBase) / time.Second
	if s < MinDeviceEpoch {
		return MinDeviceEpoch
	}
	return uint64(s)
}

// Errors returned by CheckFix; callers count rejections by them.
var (
	ErrNaN        = errors.New("coordinate is NaN or infinite")
	ErrLatRange   = errors.New("latitude out of range")
	ErrLngRange   = errors.New("longitude out of range")
	ErrNullIsland = errors.New("position is (0,0)")
	ErrField      = errors.New("field out of range")
)

// CheckFix reports whether f could be a real fix on Earth. It checks only what
// is true everywhere (ranges, NaN, the (0,0) "null island" of broken receivers);
// accuracy limits, time windows and speed plausibility are policy and belong to
// the caller.
func CheckFix(f Fix) error {
	for _, v := range []float64{f.Lat, f.Lng, f.Accuracy, f.Speed, f.Heading} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ErrNaN
		}
	}
	switch {
	case f.Lat < -90 || f.Lat > 90:
		return ErrLatRange
	case f.Lng < -180 || f.Lng > 180:
		return ErrLngRange
	case f.Lat == 0 && f.Lng == 0:
		return ErrNullIsland
	case f.Accuracy < 0 && f.Accuracy != Unknown,
		f.Speed < 0 && f.Speed != Unknown,
		f.Heading < 0 && f.Heading != Unknown, f.Heading >= 360,
		f.Battery < Unknown, f.Battery > 100:
		return fmt.Errorf("%w: accuracy %v speed %v heading %v battery %d", ErrField, f.Accuracy, f.Speed, f.Heading, f.Battery)
	}
	return nil
}
