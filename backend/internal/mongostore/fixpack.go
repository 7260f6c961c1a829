package mongostore

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// fixpack is the storage encoding of the fixes of one history bucket (one
// courier, one epoch): a byte string, fix after fix, each field a varint
// delta from the previous fix where it pays. It is lossless for what a
// Position holds in the store: device and server times at the millisecond
// (what a BSON date keeps), coordinates at 1e-7° (the wire's 1e-6° and
// OwnTracks' 7 decimals), accuracy and heading at 0.1, speed at 0.01, the
// rest as given; a value these scales would round is stored as its float64
// bits instead (flag bits), so nothing is ever rounded.
//
// One fix: flags (1 byte), then zigzag varints of seq−prev, t−prev (ms),
// rt−prev (ms), lat−prev and lng−prev (1e-7°) or 8 raw bytes each, then
// accuracy, speed, heading as uvarint(q+1) (0: unknown) or 8 raw bytes,
// then zigzag battery. A fix a second after the previous one, moving at
// 8 m/s, takes about 19 bytes (TestFixpackLossless); fixes milliseconds
// apart, as a drained backlog or the load generator sends them, fewer.
const fixpackVersion = 1

const (
	fpLate byte = 1 << iota
	fpRawLat
	fpRawLng
	fpRawAcc
	fpRawSpd
	fpRawHdg
)

var errFixpack = errors.New("history bucket: malformed fixes")

// quantum: v as an integer count of 1/scale, when that is exactly v.
func quantum(v, scale float64) (int64, bool) {
	q := math.Round(v * scale)
	if math.Abs(q) > 1<<52 || float64(int64(q))/scale != v {
		return 0, false
	}
	return int64(q), true
}

// optQuantum is quantum for an optional non-negative field (-1: unknown),
// as the uvarint to store (0: unknown).
func optQuantum(v, scale float64) (uint64, bool) {
	if v == -1 {
		return 0, true
	}
	q, ok := quantum(v, scale)
	if !ok || q < 0 {
		return 0, false
	}
	return uint64(q) + 1, true
}

func optValue(u uint64, scale float64) float64 {
	if u == 0 {
		return -1
	}
	return float64(u-1) / scale
}

// appendFixes encodes the fixes of runs, one run after the other (one
// courier and epoch, in seq order), after dst. base is the bucket's first
// seq and t0 its first device time: the deltas start there.
func appendFixes(dst []byte, runs [][]Position, base uint64, t0 time.Time) []byte {
	prevSeq, prevT, prevRT := base, t0.UnixMilli(), t0.UnixMilli()
	var prevLat, prevLng int64
	for _, ps := range runs {
		for i := range ps {
			p := &ps[i]
			var flags byte
			if p.Late {
				flags |= fpLate
			}
			lat, okLat := quantum(p.Lat, 1e7)
			lng, okLng := quantum(p.Lng, 1e7)
			acc, okAcc := optQuantum(p.AccuracyM, 10)
			spd, okSpd := optQuantum(p.SpeedMPS, 100)
			hdg, okHdg := optQuantum(p.HeadingDeg, 10)
			for _, f := range []struct {
				ok   bool
				flag byte
			}{{okLat, fpRawLat}, {okLng, fpRawLng}, {okAcc, fpRawAcc}, {okSpd, fpRawSpd}, {okHdg, fpRawHdg}} {
				if !f.ok {
					flags |= f.flag
				}
			}
			dst = append(dst, flags)
			dst = binary.AppendVarint(dst, int64(p.Seq-prevSeq))
			t, rt := p.T.UnixMilli(), p.ReceivedAt.UnixMilli()
			dst = binary.AppendVarint(dst, t-prevT)
			dst = binary.AppendVarint(dst, rt-prevRT)
			prevSeq, prevT, prevRT = p.Seq, t, rt
			if okLat {
				dst = binary.AppendVarint(dst, lat-prevLat)
				prevLat = lat
			} else {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Lat))
			}
			if okLng {
				dst = binary.AppendVarint(dst, lng-prevLng)
				prevLng = lng
			} else {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Lng))
			}
			for _, f := range []struct {
				ok bool
				q  uint64
				v  float64
			}{{okAcc, acc, p.AccuracyM}, {okSpd, spd, p.SpeedMPS}, {okHdg, hdg, p.HeadingDeg}} {
				if f.ok {
					dst = binary.AppendUvarint(dst, f.q)
				} else {
					dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f.v))
				}
			}
			dst = binary.AppendVarint(dst, int64(p.Battery))
		}
	}
	return dst
}

// fixReader decodes a fixpack; any overrun is errFixpack.
type fixReader struct {
	b   []byte
	err error
}

func (r *fixReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errFixpack
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *fixReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errFixpack
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *fixReader) float() float64 {
	if len(r.b) < 8 {
		r.err = errFixpack
		r.b = nil
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// decodeFixes decodes n fixes of courier's epoch ep; each is passed to keep,
// which says whether to collect it (nil keeps all).
func decodeFixes(dst []Position, b []byte, n int, courier string, ep, base uint64, t0 time.Time, keep func(*Position) bool) ([]Position, error) {
	r := fixReader{b: b}
	prevSeq, prevT, prevRT := base, t0.UnixMilli(), t0.UnixMilli()
	var prevLat, prevLng int64
	for i := 0; i < n; i++ {
		if len(r.b) == 0 {
			return dst, errFixpack
		}
		flags := r.b[0]
		r.b = r.b[1:]
		p := Position{CourierID: courier, Epoch: ep, Late: flags&fpLate != 0}
		prevSeq += uint64(r.varint())
		prevT += r.varint()
		prevRT += r.varint()
		p.Seq, p.T, p.ReceivedAt = prevSeq, time.UnixMilli(prevT).UTC(), time.UnixMilli(prevRT).UTC()
		if flags&fpRawLat != 0 {
			p.Lat = r.float()
		} else {
			prevLat += r.varint()
			p.Lat = float64(prevLat) / 1e7
		}
		if flags&fpRawLng != 0 {
			p.Lng = r.float()
		} else {
			prevLng += r.varint()
			p.Lng = float64(prevLng) / 1e7
		}
		opt := func(flag byte, scale float64) float64 {
			if flags&flag != 0 {
				return r.float()
			}
			return optValue(r.uvarint(), scale)
		}
		p.AccuracyM = opt(fpRawAcc, 10)
		p.SpeedMPS = opt(fpRawSpd, 100)
		p.HeadingDeg = opt(fpRawHdg, 10)
		p.Battery = int(r.varint())
		if r.err != nil {
			return dst, r.err
		}
		if keep == nil || keep(&p) {
			dst = append(dst, p)
		}
	}
	if len(r.b) != 0 {
		return dst, errFixpack
	}
	return dst, nil
}
