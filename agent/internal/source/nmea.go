package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Skip reasons counted by the NMEA decoder.
const (
	SkipChecksum = "nmea_bad_checksum"
	SkipGarbage  = "nmea_garbage"
	SkipDecode   = "nmea_decode_error"
	SkipNoDate   = "nmea_no_date"
	SkipTooLong  = "nmea_line_too_long"
	SkipNoTime   = "nmea_fix_without_time"
)

// KnotsToMPS converts NMEA speeds (knots) to metres per second.
const KnotsToMPS = 1852.0 / 3600.0

// UERE is the user equivalent range error, in metres, that turns an NMEA
// HDOP into a horizontal accuracy estimate. 5 m is the usual figure for a consumer single-band receiver.
const UERE = 5.0

// maxNMEALine is longer than any NMEA 0183 sentence (82 characters) with a
// tag block; longer lines are garbage.
const maxNMEALine = 1024

// NMEADecoder turns NMEA 0183 lines into samples, one per receiver epoch.
//
// A receiver sends several sentences per epoch (RMC, GGA, GNS, GLL, VTG,
// GSA, GST...), in an order that differs between chipsets. The decoder
// merges the sentences with the same UTC time and emits the epoch when a
// sentence of a new epoch arrives (or on Flush). RMC gives the date,
// position, speed and course; GGA and GNS the fix quality, position and
// HDOP; GLL a position; VTG speed and course; ZDA the date.
//
// Sentences without a time that say "no fix" (Quectel modules send
// $GPGGA,,,,,,0,... and $GPRMC,,V,... when they lose the fix) belong to no
// timed epoch: they close the open one, which keeps its fix, and make a
// no-fix epoch of their own.
type NMEADecoder struct {
	date    date
	ep      epoch
	skipped counters
}

type epoch struct {
	open        bool
	timeless    bool // opened by no-fix sentences without a time
	tod         tod
	date        date
	hasPos      bool
	noFix       bool
	lat, lng    float64
	speed       float64
	course      float64
	hdop        float64
	haveSpeed   bool
	haveCourse  bool
	haveQuality bool
}

// NewNMEADecoder returns a decoder with no date known yet.
func NewNMEADecoder() *NMEADecoder {
	return &NMEADecoder{}
}

// Counters returns the lines skipped, by reason.
func (d *NMEADecoder) Counters() map[string]uint64 { return d.skipped.snapshot() }

// Line feeds one line. It returns the sample of the previous epoch when this
// line opens a new one.
func (d *NMEADecoder) Line(line string) (Sample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return Sample{}, false
	}
	if len(line) > maxNMEALine {
		d.skipped.add(SkipTooLong)
		return Sample{}, false
	}
	m, err := parseSentence(line)
	if err != nil {
		switch {
		case errors.Is(err, errChecksum):
			d.skipped.add(SkipChecksum)
		case errors.Is(err, errUnsupported):
			// Sentences we do not need (GSV, GSA, proprietary $P...): not an error.
		case errors.Is(err, errNoSentence):
			d.skipped.add(SkipGarbage)
		default:
			d.skipped.add(SkipDecode)
		}
		return Sample{}, false
	}
	if m.kind == "ZDA" {
		if m.date.valid {
			d.date = m.date
		}
		return Sample{}, false
	}
	if m.kind == "VTG" {
		// VTG carries no time: it belongs to the open epoch.
		if d.ep.open && !d.ep.timeless {
			if !d.ep.haveSpeed && m.hasSpeed {
				d.ep.speed, d.ep.haveSpeed = m.speedKn*KnotsToMPS, true
			}
			if !d.ep.haveCourse && m.hasCourse {
				d.ep.course, d.ep.haveCourse = m.course, true
			}
		}
		return Sample{}, false
	}
	if !m.time.valid {
		if !m.noFix {
			d.skipped.add(SkipNoTime)
			return Sample{}, false
		}
		if d.ep.open && d.ep.timeless {
			return Sample{}, false
		}
		out, ok := d.close()
		d.ep = epoch{open: true, timeless: true, noFix: true}
		return out, ok
	}
	out, ok := d.begin(m.time)
	if m.kind == "RMC" && m.date.valid {
		d.date, d.ep.date = m.date, m.date
	}
	if m.kind == "GGA" || m.kind == "GNS" {
		d.ep.haveQuality = true
		if m.hasHDOP && m.fix {
			d.ep.hdop = m.hdop
		}
	}
	if m.noFix {
		d.ep.noFix = true
		return out, ok
	}
	// RMC's position wins; the others fill in when it has not come (yet).
	if m.hasPos && (m.kind == "RMC" || !d.ep.hasPos) {
		d.ep.hasPos, d.ep.lat, d.ep.lng = true, m.lat, m.lng
	}
	if m.kind == "RMC" {
		if m.hasSpeed {
			d.ep.speed, d.ep.haveSpeed = m.speedKn*KnotsToMPS, true
		}
		if m.hasCourse {
			d.ep.course, d.ep.haveCourse = m.course, true
		}
	}
	return out, ok
}

// Flush returns the sample of the open epoch, if any.
func (d *NMEADecoder) Flush() (Sample, bool) {
	out, ok := d.close()
	d.ep = epoch{}
	return out, ok
}

// begin makes t the open epoch, closing a different one.
func (d *NMEADecoder) begin(t tod) (Sample, bool) {
	if d.ep.open && !d.ep.timeless && d.ep.tod == t {
		return Sample{}, false
	}
	out, ok := d.close()
	d.ep = epoch{open: true, tod: t, date: d.date}
	return out, ok
}

func (d *NMEADecoder) close() (Sample, bool) {
	e := d.ep
	if !e.open {
		return Sample{}, false
	}
	if e.noFix || !e.hasPos {
		if e.noFix {
			return Sample{NoFix: true}, true
		}
		return Sample{}, false
	}
	dt := e.date
	if !dt.valid {
		dt = d.date // a date learnt later in the same epoch (RMC or ZDA after GGA)
	}
	if !dt.valid {
		d.skipped.add(SkipNoDate)
		return Sample{}, false
	}
	f := unknownFix()
	f.Time = time.Date(2000+dt.yy, time.Month(dt.mm), dt.dd, e.tod.hour, e.tod.minute, e.tod.second,
		e.tod.millisecond*int(time.Millisecond), time.UTC)
	f.Lat, f.Lng = e.lat, e.lng
	if e.haveSpeed {
		f.Speed = e.speed
	}
	if e.haveCourse && e.course >= 0 && e.course < 360 {
		f.Heading = e.course
	}
	if e.hdop > 0 {
		f.Accuracy = e.hdop * UERE
	}
	return Sample{Fix: f}, true
}

// readNMEA decodes lines from r until EOF, calling emit for every epoch.
func readNMEA(ctx context.Context, d *NMEADecoder, r io.Reader, now func() time.Time, emit Emit) error {
	br := bufio.NewReaderSize(r, 4096)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, err := readLine(br)
		if line != "" {
			if s, ok := d.Line(line); ok {
				s.Read = now()
				if eerr := emit(s); eerr != nil {
					return eerr
				}
			}
		}
		if err != nil {
			if s, ok := d.Flush(); ok {
				s.Read = now()
				if eerr := emit(s); eerr != nil {
					return eerr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// readLine reads one line, truncating (and so marking as garbage) lines
// longer than maxNMEALine instead of buffering them whole.
func readLine(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if sb.Len() <= maxNMEALine {
			sb.Write(chunk)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return sb.String(), err
	}
}

// NMEAFile replays an NMEA log.
type NMEAFile struct {
	path  string
	speed float64
	log   *slog.Logger
	dec   *NMEADecoder
}

// NewNMEAFile returns a replay of the log at path, speed times faster than
// recorded (0: as fast as possible).
func NewNMEAFile(path string, speed float64, log *slog.Logger) *NMEAFile {
	return &NMEAFile{path: path, speed: speed, log: log, dec: NewNMEADecoder()}
}

// Finite is true.
func (n *NMEAFile) Finite() bool { return true }

// Counters returns the lines skipped.
func (n *NMEAFile) Counters() map[string]uint64 { return n.dec.Counters() }

// Run decodes the whole file, then replays its epochs.
func (n *NMEAFile) Run(ctx context.Context, emit Emit) error {
	f, err := os.Open(n.path)
	if err != nil {
		return fmt.Errorf("nmea file: %w", err)
	}
	defer f.Close()
	var samples []Sample
	err = readNMEA(ctx, n.dec, f, time.Now, func(s Sample) error {
		samples = append(samples, s)
		return nil
	})
	if err != nil {
		return fmt.Errorf("nmea file %s: %w", n.path, err)
	}
	n.log.Info("nmea log decoded", "path", n.path, "epochs", len(samples), "skipped", n.dec.Counters())
	return replay(ctx, samples, n.speed, emit)
}

// NMEASerial reads a serial NMEA receiver. The port's speed must be set
// beforehand (stty -F /dev/ttyUSB0 9600 raw): the agent stays pure Go and
// portable to Android, where the port is already configured.
type NMEASerial struct {
	path string
	log  *slog.Logger
	dec  *NMEADecoder
}

// NewNMEASerial returns a source reading the device at path.
func NewNMEASerial(path string, log *slog.Logger) *NMEASerial {
	return &NMEASerial{path: path, log: log, dec: NewNMEADecoder()}
}

// Finite is false.
func (n *NMEASerial) Finite() bool { return false }

// Counters returns the lines skipped.
func (n *NMEASerial) Counters() map[string]uint64 { return n.dec.Counters() }

// Run reads the device, reopening it (after a pause) when it fails or
// disappears (USB receivers get unplugged).
func (n *NMEASerial) Run(ctx context.Context, emit Emit) error {
	var emitErr error
	guarded := func(s Sample) error {
		if err := emit(s); err != nil {
			emitErr = err
			return err
		}
		return nil
	}
	backoff := time.Second
	for {
		f, err := os.Open(n.path)
		if err == nil {
			backoff = time.Second
			stop := context.AfterFunc(ctx, func() { f.Close() })
			err = readNMEA(ctx, n.dec, f, time.Now, guarded)
			stop()
			f.Close()
		}
		if emitErr != nil {
			return emitErr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.log.Warn("nmea device", "path", n.path, "err", err, "retry_in", backoff)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
