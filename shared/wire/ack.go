package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// AckVersion opens every storage acknowledgement payload.
const AckVersion = 1

// MaxAckRanges bounds the ranges of one acknowledgement; a sender with more
// sends the rest in the next one.
const MaxAckRanges = 64

// ErrAck reports a malformed storage acknowledgement.
var ErrAck = errors.New("malformed storage acknowledgement")

// SeqRange is the inclusive range From..To of sequence numbers.
type SeqRange struct{ From, To uint64 }

// Ack is the backend's storage acknowledgement to one device, on the
// device's ack topic: every fix of Epoch whose Seq lies in one of Ranges has
// been durably handled (stored, or refused for good, which a re-send would
// not change). The device may forget those fixes; it keeps, and after a
// bounded delay sends again, every fix the broker acknowledged but no Ack
// covered. Ranges are sorted, disjoint and not adjacent.
//
// Why ranges and not one "stored up to" number: behind a shared subscription
// each backend replica stores only its share of a courier's messages, so no
// replica alone can vouch for a contiguous prefix. With one replica (or one
// message per ack interval) it is a single range, i.e. "stored up to To".
type Ack struct {
	Epoch  uint64
	Ranges []SeqRange
}

// EncodeAck appends the encoding of a to dst.
//
//	payload := version:u8(=1) epoch:uvarint n:uvarint range{n}
//	range[0] := from:uvarint      span:uvarint   (span = To - From)
//	range[i] := gap:uvarint       span:uvarint   (gap = From - prev.To - 2 ≥ 0)
//
// A typical acknowledgement (one range, epoch ~6e7, seq < 2^21) is 8 bytes.
func EncodeAck(dst []byte, a Ack) ([]byte, error) {
	if len(a.Ranges) == 0 || len(a.Ranges) > MaxAckRanges {
		return dst, fmt.Errorf("%w: %d ranges", ErrAck, len(a.Ranges))
	}
	start := len(dst)
	dst = append(dst, AckVersion)
	dst = binary.AppendUvarint(dst, a.Epoch)
	dst = binary.AppendUvarint(dst, uint64(len(a.Ranges)))
	var prevTo uint64
	for i, r := range a.Ranges {
		if r.From == 0 || r.To < r.From || (i > 0 && r.From < prevTo+2) {
			return dst[:start], fmt.Errorf("%w: range %d %d..%d", ErrAck, i, r.From, r.To)
		}
		if i == 0 {
			dst = binary.AppendUvarint(dst, r.From)
		} else {
			dst = binary.AppendUvarint(dst, r.From-prevTo-2)
		}
		dst = binary.AppendUvarint(dst, r.To-r.From)
		prevTo = r.To
	}
	return dst, nil
}

// DecodeAck decodes and checks a storage acknowledgement.
func DecodeAck(p []byte) (Ack, error) {
	var a Ack
	if len(p) == 0 {
		return a, ErrTruncated
	}
	if p[0] != AckVersion {
		return a, fmt.Errorf("%w: ack %d", ErrVersion, p[0])
	}
	d := decoder{p: p[1:]}
	a.Epoch = d.uvarint()
	n := d.uvarint()
	if d.err != nil {
		return Ack{}, d.err
	}
	if n == 0 || n > MaxAckRanges || n > uint64(len(d.p)/2) {
		return Ack{}, fmt.Errorf("%w: %d ranges in %d bytes", ErrAck, n, len(d.p))
	}
	a.Ranges = make([]SeqRange, 0, n)
	var prevTo uint64
	for i := uint64(0); i < n; i++ {
		v, span := d.uvarint(), d.uvarint()
		if d.err != nil {
			return Ack{}, d.err
		}
		from := v
		if i > 0 {
			from = prevTo + 2 + v
			if from < prevTo {
				return Ack{}, fmt.Errorf("%w: range %d overflows", ErrAck, i)
			}
		}
		to := from + span
		if from == 0 || to < from {
			return Ack{}, fmt.Errorf("%w: range %d overflows", ErrAck, i)
		}
		a.Ranges = append(a.Ranges, SeqRange{From: from, To: to})
		prevTo = to
	}
	if len(d.p) != 0 {
		return Ack{}, ErrTrailing
	}
	return a, nil
}

// Contains reports whether seq of epoch is acknowledged by a.
func (a Ack) Contains(epoch, seq uint64) bool {
	if epoch != a.Epoch {
		return false
	}
	for _, r := range a.Ranges {
		if seq >= r.From && seq <= r.To {
			return true
		}
	}
	return false
}

// AddRange adds From..To to sorted, disjoint, non-adjacent ranges rs and
// returns the merged result (rs may be reused).
func AddRange(rs []SeqRange, r SeqRange) []SeqRange {
	out := rs[:0:0]
	placed := false
	for _, x := range rs {
		switch {
		case x.To+1 < r.From: // x entirely before r
			out = append(out, x)
		case r.To+1 < x.From: // x entirely after r
			if !placed {
				out = append(out, r)
				placed = true
			}
			out = append(out, x)
		default: // overlapping or adjacent: merge into r
			r.From, r.To = min(r.From, x.From), max(r.To, x.To)
		}
	}
	if !placed {
		out = append(out, r)
	}
	return out
}
