package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Position payload versions: the byte that opens every position payload.
// Version 2 adds the sequence epoch; version 3 (PosVersion3) packs the same
// fields into fewer bytes. Decoders accept all three.
const (
	PosVersion1 = 1
	PosVersion2 = 2
	// PosVersion is the layout with an epoch and a count that hand-made
	// test payloads use; EncodeBatch writes PosVersion3 whenever it can.
	PosVersion = PosVersion2
)

// Limits of a position payload. A message over them is refused whole.
const (
	MaxBatch      = 500      // fixes in one message
	MaxPosPayload = 16 << 10 // bytes in one message
	minFixBytes   = 1 + 1 + 1 + 1 + 1
)

// Presence flags of the optional fields, one byte per fix.
const (
	flagAccuracy = 1 << iota
	flagSpeed
	flagHeading
	flagBattery
	flagsKnown = flagAccuracy | flagSpeed | flagHeading | flagBattery
)

// Errors of DecodeBatch and EncodeBatch.
var (
	ErrVersion   = errors.New("unsupported position payload version")
	ErrTruncated = errors.New("position payload truncated")
	ErrTrailing  = errors.New("trailing bytes after position payload")
	ErrTooLarge  = errors.New("position payload too large")
	ErrEmpty     = errors.New("position payload has no fix")
	ErrSeqOrder  = errors.New("sequence numbers not strictly increasing")
	ErrFlags     = errors.New("unknown field flags")
	ErrEpoch     = errors.New("fixes of one payload must share one epoch")
)

// EncodeBatch appends the encoding of fixes (oldest first, strictly
// increasing Seq, one Epoch) to dst: version 3 when the epoch is an agent's
// and the fixes fit it (see encodeV3), else version 2 when the epoch is set,
// version 1 (no epoch) when it is EpochNone.
func EncodeBatch(dst []byte, fixes []Fix) ([]byte, error) {
	if err := checkBatch(fixes); err != nil {
		return dst, err
	}
	if out, ok := encodeV3(dst, fixes); ok {
		return out, nil
	}
	return encodeV12(dst, fixes)
}

// encodeV12 appends the version 1 or 2 encoding of checked fixes.
//
// Layout (all integers varints as in encoding/binary; "zz" = zig-zag signed):
//
//	payload := version:u8(=1) count:uvarint fix{count}
//	         | version:u8(=2) epoch:uvarint count:uvarint fix{count}
//	fix[0]  := flags:u8 seq:uvarint t:zz(unix ms) lat:zz(1e-6°) lng:zz(1e-6°) opt
//	fix[i]  := flags:u8 Δseq:uvarint Δt:zz Δlat:zz Δlng:zz opt     (Δ from fix[i-1])
//	opt     := [acc:uvarint(dm)] [speed:uvarint(cm/s)] [heading:uvarint(0.1°)] [battery:u8]
//
// Each optional field is present when its flag bit (accuracy 1, speed 2,
// heading 4, battery 8) is set.
func encodeV12(dst []byte, fixes []Fix) ([]byte, error) {
	start := len(dst)
	epoch := fixes[0].Epoch
	if epoch == EpochNone {
		dst = append(dst, PosVersion1)
	} else {
		dst = append(dst, PosVersion2)
		dst = binary.AppendUvarint(dst, epoch)
	}
	dst = binary.AppendUvarint(dst, uint64(len(fixes)))
	var prev struct {
		seq          uint64
		ms, lat, lng int64
	}
	for _, f := range fixes {
		ms := f.Time.UnixMilli()
		lat := int64(math.Round(f.Lat * 1e6))
		lng := int64(math.Round(f.Lng * 1e6))
		var flags byte
		if f.Accuracy != Unknown {
			flags |= flagAccuracy
		}
		if f.Speed != Unknown {
			flags |= flagSpeed
		}
		if f.Heading != Unknown {
			flags |= flagHeading
		}
		if f.Battery != Unknown {
			flags |= flagBattery
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, f.Seq-prev.seq)
		dst = binary.AppendVarint(dst, ms-prev.ms)
		dst = binary.AppendVarint(dst, lat-prev.lat)
		dst = binary.AppendVarint(dst, lng-prev.lng)
		if flags&flagAccuracy != 0 {
			dst = binary.AppendUvarint(dst, uint64(math.Round(f.Accuracy*10)))
		}
		if flags&flagSpeed != 0 {
			dst = binary.AppendUvarint(dst, uint64(math.Round(f.Speed*100)))
		}
		if flags&flagHeading != 0 {
			dst = binary.AppendUvarint(dst, uint64(math.Round(f.Heading*10))%3600)
		}
		if flags&flagBattery != 0 {
			dst = append(dst, byte(f.Battery))
		}
		prev.seq, prev.ms, prev.lat, prev.lng = f.Seq, ms, lat, lng
	}
	if len(dst)-start > MaxPosPayload {
		return dst[:start], fmt.Errorf("%w: %d bytes", ErrTooLarge, len(dst)-start)
	}
	return dst, nil
}

// DecodeBatch decodes a version 1, 2 or 3 position payload (version 1
// fixes have Epoch EpochNone; versions 2 and 3 carry an epoch of at least
// MinDeviceEpoch). It refuses the whole message on
// any structural error (version, truncation, trailing bytes, size, sequence
// order); each decoded fix additionally passes CheckFix or the message is
// refused. Semantic policy (time windows, accuracy, speed) is the caller's.
func DecodeBatch(p []byte) ([]Fix, error) { return DecodeBatchTo(nil, p) }

// DecodeBatchTo is DecodeBatch into dst's storage (its contents are
// overwritten; a larger array is allocated when dst's is too small), for a
// caller that decodes message after message into one buffer.
func DecodeBatchTo(dst []Fix, p []byte) ([]Fix, error) {
	if len(p) > MaxPosPayload {
		return nil, ErrTooLarge
	}
	if len(p) == 0 {
		return nil, ErrTruncated
	}
	d := decoder{p: p[1:]}
	var epoch uint64
	switch p[0] {
	case PosVersion1:
	case PosVersion3:
		return decodeV3(dst, p[1:])
	case PosVersion2:
		epoch = d.uvarint()
		if d.err == nil && epoch < MinDeviceEpoch {
			return nil, fmt.Errorf("%w: epoch %d is reserved", ErrEpoch, epoch)
		}
	default:
		return nil, fmt.Errorf("%w: %d", ErrVersion, p[0])
	}
	n := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if n == 0 {
		return nil, ErrEmpty
	}
	if n > MaxBatch || n > uint64(len(d.p)/minFixBytes) {
		return nil, fmt.Errorf("%w: count %d for %d bytes", ErrTooLarge, n, len(d.p))
	}
	fixes := slices.Grow(dst[:0], int(n))
	var seq uint64
	var ms, lat, lng int64
	for i := uint64(0); i < n; i++ {
		flags := d.byte()
		if flags&^flagsKnown != 0 {
			return nil, ErrFlags
		}
		dseq := d.uvarint()
		if d.err == nil && (dseq == 0 || seq+dseq < seq) {
			return nil, ErrSeqOrder
		}
		seq += dseq
		ms += d.varint()
		lat += d.varint()
		lng += d.varint()
		f := Fix{Epoch: epoch, Seq: seq, Time: time.UnixMilli(ms).UTC(), Lat: float64(lat) / 1e6, Lng: float64(lng) / 1e6,
			Accuracy: Unknown, Speed: Unknown, Heading: Unknown, Battery: Unknown}
		if flags&flagAccuracy != 0 {
			f.Accuracy = float64(d.uvarint()) / 10
		}
		if flags&flagSpeed != 0 {
			f.Speed = float64(d.uvarint()) / 100
		}
		if flags&flagHeading != 0 {
			f.Heading = float64(d.uvarint()) / 10
		}
		if flags&flagBattery != 0 {
			f.Battery = int(d.byte())
		}
		if d.err != nil {
			return nil, d.err
		}
		if err := CheckFix(f); err != nil {
			return nil, fmt.Errorf("fix seq %d: %w", f.Seq, err)
		}
		fixes = append(fixes, f)
	}
	if len(d.p) != 0 {
		return nil, ErrTrailing
	}
	return fixes, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.p) == 0 {
		d.err = ErrTruncated
		return 0
	}
	b := d.p[0]
	d.p = d.p[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err = ErrTruncated
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.err = ErrTruncated
		return 0
	}
	d.p = d.p[n:]
	return v
}
