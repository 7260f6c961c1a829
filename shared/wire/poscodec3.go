package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// PosVersion3 is the bit-packed batch: what EncodeBatch writes for the
// fixes of an agent epoch when it can (see encodeV3). It carries exactly
// what version 2 carries (same units), in fewer bytes: a batch of five 1 Hz
// fixes of a moving courier takes about 50 bytes instead of about 80.
const PosVersion3 = 3

// Head bits of a version-3 payload.
const (
	v3Fields      = flagsKnown // bits 0-3: accuracy, speed, heading, battery, present in every fix
	v3Consecutive = 1 << 4     // sequence numbers are consecutive: no sequence column
	v3CountShift  = 5          // bits 5-7: min(count-1, 7); 7: count-8 follows as a uvarint
	v3CountInline = 7
	v3WidthBits   = 6 // bits of a column's width
	v3MaxWidth    = 1<<v3WidthBits - 1
	headingUnits  = 3600 // 0.1° units in a turn
)

// epochOriginMS is the Unix time in ms at which an epoch began: version-3
// times count from it (an epoch is the seconds since EpochBase at the
// creation of the device's outbox), which saves a byte or two per message.
func epochOriginMS(epoch uint64) int64 {
	return EpochBase.UnixMilli() + int64(epoch)*1000
}

// EncodeBatchVersion is EncodeBatch with the payload version chosen by the
// caller: 1 (fixes without epoch), 2 or 3 (fixes with one). Version 3 also
// needs every fix to carry the same optional fields and field deltas that
// fit its columns; it returns ErrVersion when they do not.
func EncodeBatchVersion(dst []byte, fixes []Fix, version byte) ([]byte, error) {
	if err := checkBatch(fixes); err != nil {
		return dst, err
	}
	switch version {
	case PosVersion1:
		if fixes[0].Epoch != EpochNone {
			return dst, fmt.Errorf("%w: version 1 has no epoch", ErrEpoch)
		}
		return encodeV12(dst, fixes)
	case PosVersion2:
		if fixes[0].Epoch == EpochNone {
			return dst, fmt.Errorf("%w: version 2 needs an epoch", ErrEpoch)
		}
		return encodeV12(dst, fixes)
	case PosVersion3:
		out, ok := encodeV3(dst, fixes)
		if !ok {
			return dst, fmt.Errorf("%w: these fixes do not fit version 3", ErrVersion)
		}
		return out, nil
	}
	return dst, fmt.Errorf("%w: %d", ErrVersion, version)
}

// checkBatch checks what every version requires of the fixes.
func checkBatch(fixes []Fix) error {
	if len(fixes) == 0 {
		return ErrEmpty
	}
	if len(fixes) > MaxBatch {
		return fmt.Errorf("%w: %d fixes, at most %d", ErrTooLarge, len(fixes), MaxBatch)
	}
	epoch := fixes[0].Epoch
	for i, f := range fixes {
		if err := CheckFix(f); err != nil {
			return fmt.Errorf("fix seq %d: %w", f.Seq, err)
		}
		if f.Epoch != epoch {
			return fmt.Errorf("fix %d seq %d: %w", i, f.Seq, ErrEpoch)
		}
		if f.Seq == 0 || (i > 0 && f.Seq <= fixes[i-1].Seq) {
			return fmt.Errorf("fix %d seq %d: %w", i, f.Seq, ErrSeqOrder)
		}
	}
	return nil
}

// quantized is a fix in its wire units.
type quantized struct {
	seq                      uint64
	ms, lat, lng             int64
	acc, speed, heading, bat int64 // -1: unknown
}

func quantize(f Fix) quantized {
	q := quantized{seq: f.Seq, ms: f.Time.UnixMilli(), lat: int64(math.Round(f.Lat * 1e6)), lng: int64(math.Round(f.Lng * 1e6)),
		acc: -1, speed: -1, heading: -1, bat: -1}
	if f.Accuracy != Unknown {
		q.acc = int64(math.Round(f.Accuracy * 10))
	}
	if f.Speed != Unknown {
		q.speed = int64(math.Round(f.Speed * 100))
	}
	if f.Heading != Unknown {
		q.heading = int64(math.Round(f.Heading*10)) % headingUnits
	}
	if f.Battery != Unknown {
		q.bat = int64(f.Battery)
	}
	return q
}

func (q quantized) flags() byte {
	var fl byte
	if q.acc >= 0 {
		fl |= flagAccuracy
	}
	if q.speed >= 0 {
		fl |= flagSpeed
	}
	if q.heading >= 0 {
		fl |= flagHeading
	}
	if q.bat >= 0 {
		fl |= flagBattery
	}
	return fl
}

// encodeV3 appends the version-3 encoding of fixes (already checked), or
// returns ok false when they do not fit it (mixed optional fields, an epoch
// below MinDeviceEpoch, a delta wider than 63 bits).
//
//	payload := version:u8(=3) epoch:uvarint head:u8 [count-8:uvarint] [step:zz] fix0 columns
//	head    := fields:4 bits (accuracy 1, speed 2, heading 4, battery 8: present in every fix)
//	           | consecutive:1 bit (16) | min(count-1, 7):3 bits (<<5)
//	step    := the usual time step in ms (present when count ≥ 2)
//	fix0    := seq:uvarint t:zz(ms since the epoch began) lat:zz lng:zz [acc][speed][heading][battery]
//	           (units and optional fields as version 2, all uvarints)
//	columns := a bit stream, least significant bit first, zero-padded to a byte:
//	           for each column, width:6 bits then count-1 values of width bits each.
//	           Columns, in order: [seq: Δseq-1, absent when consecutive]
//	           t: zz(Δt - step) | lat: zz(Δ) | lng: zz(Δ) | then each present
//	           optional field: zz(Δ) (heading: Δ taken the short way round, mod 3600)
//
// Δ is from the previous fix. Widths adapt to each batch, so a column that
// does not change (the battery, the heading on a straight street) costs 6
// bits for the whole batch.
func encodeV3(dst []byte, fixes []Fix) ([]byte, bool) {
	epoch := fixes[0].Epoch
	if epoch < MinDeviceEpoch {
		return dst, false
	}
	qs := make([]quantized, len(fixes))
	for i, f := range fixes {
		qs[i] = quantize(f)
		if max(qs[i].acc, qs[i].speed, qs[i].bat) > math.MaxInt32 {
			return dst, false // the decoder refuses such values: version 2 carries them
		}
	}
	fields := qs[0].flags()
	consecutive := true
	for i := 1; i < len(qs); i++ {
		if qs[i].flags() != fields {
			return dst, false
		}
		if qs[i].seq != qs[i-1].seq+1 {
			consecutive = false
		}
	}
	n := len(qs)
	head := fields | byte(min(n-1, v3CountInline))<<v3CountShift
	if consecutive {
		head |= v3Consecutive
	}
	var step int64
	if n >= 2 {
		dts := make([]int64, n-1)
		for i := 1; i < n; i++ {
			dts[i-1] = qs[i].ms - qs[i-1].ms
		}
		slices.Sort(dts)
		step = dts[(len(dts)-1)/2]
	}
	var cols [][]uint64
	col := func(v func(i int) uint64) {
		c := make([]uint64, n-1)
		for i := 1; i < n; i++ {
			c[i-1] = v(i)
		}
		cols = append(cols, c)
	}
	if n >= 2 {
		if !consecutive {
			col(func(i int) uint64 { return qs[i].seq - qs[i-1].seq - 1 })
		}
		col(func(i int) uint64 { return zigzag(qs[i].ms - qs[i-1].ms - step) })
		col(func(i int) uint64 { return zigzag(qs[i].lat - qs[i-1].lat) })
		col(func(i int) uint64 { return zigzag(qs[i].lng - qs[i-1].lng) })
		if fields&flagAccuracy != 0 {
			col(func(i int) uint64 { return zigzag(qs[i].acc - qs[i-1].acc) })
		}
		if fields&flagSpeed != 0 {
			col(func(i int) uint64 { return zigzag(qs[i].speed - qs[i-1].speed) })
		}
		if fields&flagHeading != 0 {
			col(func(i int) uint64 { return zigzag(turn(qs[i].heading - qs[i-1].heading)) })
		}
		if fields&flagBattery != 0 {
			col(func(i int) uint64 { return zigzag(qs[i].bat - qs[i-1].bat) })
		}
	}
	widths := make([]int, len(cols))
	for j, c := range cols {
		var all uint64
		for _, v := range c {
			all |= v
		}
		widths[j] = bits.Len64(all)
		if widths[j] > v3MaxWidth {
			return dst, false
		}
	}

	start := len(dst)
	dst = append(dst, PosVersion3)
	dst = binary.AppendUvarint(dst, epoch)
	dst = append(dst, head)
	if n-1 >= v3CountInline {
		dst = binary.AppendUvarint(dst, uint64(n-1-v3CountInline))
	}
	if n >= 2 {
		dst = binary.AppendVarint(dst, step)
	}
	q := qs[0]
	dst = binary.AppendUvarint(dst, q.seq)
	dst = binary.AppendVarint(dst, q.ms-epochOriginMS(epoch))
	dst = binary.AppendVarint(dst, q.lat)
	dst = binary.AppendVarint(dst, q.lng)
	for _, v := range []int64{q.acc, q.speed, q.heading, q.bat} {
		if v >= 0 {
			dst = binary.AppendUvarint(dst, uint64(v))
		}
	}
	w := bitWriter{b: dst}
	for j, c := range cols {
		w.write(uint64(widths[j]), v3WidthBits)
		for _, v := range c {
			w.write(v, widths[j])
		}
	}
	dst = w.flush()
	if len(dst)-start > MaxPosPayload {
		return dst[:start], false
	}
	return dst, true
}

// decodeV3 decodes the rest of a version-3 payload (after its version byte).
func decodeV3(dst []Fix, p []byte) ([]Fix, error) {
	d := decoder{p: p}
	epoch := d.uvarint()
	head := d.byte()
	if d.err != nil {
		return nil, d.err
	}
	if epoch < MinDeviceEpoch {
		return nil, fmt.Errorf("%w: epoch %d is reserved", ErrEpoch, epoch)
	}
	n := uint64(head>>v3CountShift) + 1
	if n-1 == v3CountInline {
		more := d.uvarint()
		if d.err != nil {
			return nil, d.err
		}
		if more > MaxBatch {
			return nil, fmt.Errorf("%w: count %d", ErrTooLarge, more)
		}
		n += more
	}
	if n > MaxBatch {
		return nil, fmt.Errorf("%w: count %d", ErrTooLarge, n)
	}
	fields := head & v3Fields
	var step int64
	if n >= 2 {
		step = d.varint()
	}
	var q quantized
	q.seq = d.uvarint()
	q.ms = d.varint() + epochOriginMS(epoch)
	q.lat = d.varint()
	q.lng = d.varint()
	q.acc, q.speed, q.heading, q.bat = -1, -1, -1, -1
	for bit, v := range []*int64{&q.acc, &q.speed, &q.heading, &q.bat} {
		if fields&(1<<bit) != 0 {
			u := d.uvarint()
			if u > math.MaxInt32 {
				return nil, fmt.Errorf("%w: field value %d", ErrField, u)
			}
			*v = int64(u)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if q.seq == 0 {
		return nil, ErrSeqOrder
	}
	fixes := slices.Grow(dst[:0], int(n))
	f, err := q.fix(epoch, fields)
	if err != nil {
		return nil, err
	}
	fixes = append(fixes, f)
	if n == 1 {
		if len(d.p) != 0 {
			return nil, ErrTrailing
		}
		return fixes, nil
	}
	r := bitReader{p: d.p}
	var cols [][]uint64
	ncols := 3 + bits.OnesCount8(fields)
	if head&v3Consecutive == 0 {
		ncols++
	}
	for range ncols {
		w := int(r.read(v3WidthBits))
		c := make([]uint64, n-1)
		for i := range c {
			c[i] = r.read(w)
		}
		cols = append(cols, c)
	}
	if r.err != nil {
		return nil, r.err
	}
	if !r.done() {
		return nil, ErrTrailing
	}
	next := func() []uint64 { c := cols[0]; cols = cols[1:]; return c }
	var dseq []uint64
	if head&v3Consecutive == 0 {
		dseq = next()
	}
	dt, dlat, dlng := next(), next(), next()
	var dacc, dspeed, dheading, dbat []uint64
	if fields&flagAccuracy != 0 {
		dacc = next()
	}
	if fields&flagSpeed != 0 {
		dspeed = next()
	}
	if fields&flagHeading != 0 {
		dheading = next()
	}
	if fields&flagBattery != 0 {
		dbat = next()
	}
	for i := range n - 1 {
		prev := q.seq
		if dseq != nil {
			q.seq += dseq[i] + 1
		} else {
			q.seq++
		}
		if q.seq <= prev {
			return nil, ErrSeqOrder
		}
		q.ms += step + unzigzag(dt[i])
		q.lat += unzigzag(dlat[i])
		q.lng += unzigzag(dlng[i])
		if dacc != nil {
			q.acc += unzigzag(dacc[i])
		}
		if dspeed != nil {
			q.speed += unzigzag(dspeed[i])
		}
		if dheading != nil {
			q.heading = ((q.heading+unzigzag(dheading[i]))%headingUnits + headingUnits) % headingUnits
		}
		if dbat != nil {
			q.bat += unzigzag(dbat[i])
		}
		f, err := q.fix(epoch, fields)
		if err != nil {
			return nil, err
		}
		fixes = append(fixes, f)
	}
	return fixes, nil
}

// fix converts q back, refusing what version 2 could not have carried; the
// optional fields in fields are present (a delta may not make them unknown).
func (q quantized) fix(epoch uint64, fields byte) (Fix, error) {
	if q.lat < -90e6 || q.lat > 90e6 {
		return Fix{}, ErrLatRange
	}
	if q.lng < -180e6 || q.lng > 180e6 {
		return Fix{}, ErrLngRange
	}
	f := Fix{Epoch: epoch, Seq: q.seq, Time: time.UnixMilli(q.ms).UTC(), Lat: float64(q.lat) / 1e6, Lng: float64(q.lng) / 1e6,
		Accuracy: Unknown, Speed: Unknown, Heading: Unknown, Battery: Unknown}
	for bit, v := range []int64{q.acc, q.speed, q.heading, q.bat} {
		if fields&(1<<bit) != 0 && (v < 0 || v > math.MaxInt32) {
			return Fix{}, fmt.Errorf("%w: field value %d", ErrField, v)
		}
	}
	if q.acc >= 0 {
		f.Accuracy = float64(q.acc) / 10
	}
	if q.speed >= 0 {
		f.Speed = float64(q.speed) / 100
	}
	if q.heading >= 0 {
		f.Heading = float64(q.heading) / 10
	}
	if q.bat >= 0 {
		if q.bat > 255 {
			return Fix{}, fmt.Errorf("%w: battery %d", ErrField, q.bat)
		}
		f.Battery = int(q.bat)
	}
	if err := CheckFix(f); err != nil {
		return Fix{}, fmt.Errorf("fix seq %d: %w", f.Seq, err)
	}
	return f, nil
}

// turn maps a heading difference to (-1800, 1800]: the short way round.
func turn(d int64) int64 {
	d %= headingUnits
	switch {
	case d > headingUnits/2:
		d -= headingUnits
	case d <= -headingUnits/2:
		d += headingUnits
	}
	return d
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// bitWriter appends bits, least significant first.
type bitWriter struct {
	b    []byte
	acc  uint64
	nacc int
}

func (w *bitWriter) write(v uint64, n int) {
	for n > 0 {
		take := min(n, 64-w.nacc, 8)
		w.acc |= (v & (1<<take - 1)) << w.nacc
		w.nacc += take
		v >>= take
		n -= take
		for w.nacc >= 8 {
			w.b = append(w.b, byte(w.acc))
			w.acc >>= 8
			w.nacc -= 8
		}
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.b = append(w.b, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.b
}

// bitReader reads what bitWriter wrote.
type bitReader struct {
	p   []byte
	pos int // bits consumed
	err error
}

func (r *bitReader) read(n int) uint64 {
	if r.err != nil || n == 0 {
		return 0
	}
	if r.pos+n > len(r.p)*8 {
		r.err = ErrTruncated
		return 0
	}
	var v uint64
	for i := 0; i < n; {
		byteI, off := r.pos/8, r.pos%8
		take := min(8-off, n-i)
		v |= (uint64(r.p[byteI]) >> off & (1<<take - 1)) << i
		i += take
		r.pos += take
	}
	return v
}

// done reports whether the stream ended at its last byte with zero padding.
func (r *bitReader) done() bool {
	if (r.pos+7)/8 != len(r.p) {
		return false
	}
	if off := r.pos % 8; off != 0 && r.p[len(r.p)-1]>>off != 0 {
		return false
	}
	return true
}

// BatchCount reads the number of fixes of a position payload without
// decoding them (for counters that must not pay for a decode).
func BatchCount(p []byte) (int, bool) {
	if len(p) < 2 {
		return 0, false
	}
	d := decoder{p: p[1:]}
	var n uint64
	switch p[0] {
	case PosVersion1:
		n = d.uvarint()
	case PosVersion2:
		d.uvarint()
		n = d.uvarint()
	case PosVersion3:
		d.uvarint()
		head := d.byte()
		n = uint64(head>>v3CountShift) + 1
		if n-1 == v3CountInline {
			n += d.uvarint()
		}
	default:
		return 0, false
	}
	if d.err != nil || n == 0 || n > MaxBatch {
		return 0, false
	}
	return int(n), true
}
