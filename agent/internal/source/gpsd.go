package source

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"time"
)

// Skip reasons counted by the gpsd source.
const (
	SkipGPSDJSON    = "gpsd_bad_json"
	SkipGPSDTooLong = "gpsd_line_too_long"
	SkipGPSDNoTime  = "gpsd_tpv_without_time"
)

// gpsdWatch asks gpsd to stream JSON reports.
const gpsdWatch = `?WATCH={"enable":true,"json":true}` + "\n"

// maxGPSDLine bounds one gpsd report; SKY reports with many satellites are
// a few KiB.
const maxGPSDLine = 64 << 10

// Errors of DecodeGPSD.
var (
	ErrGPSDReport = errors.New("gpsd report")               // not JSON, or a malformed field
	ErrGPSDNoTime = errors.New("gpsd TPV fix without time") // a fix gpsd could not date
)

// TPV is the subset of gpsd's time-position-velocity report the agent uses.
type TPV struct {
	Class string   `json:"class"`
	Mode  int      `json:"mode"` // 0 unknown, 1 no fix, 2 2D, 3 3D
	Time  string   `json:"time"`
	Lat   *float64 `json:"lat"`
	Lon   *float64 `json:"lon"`
	Eph   *float64 `json:"eph"` // estimated horizontal position error, metres (gpsd >= 3.20)
	Epx   *float64 `json:"epx"`
	Epy   *float64 `json:"epy"`
	Speed *float64 `json:"speed"` // m/s
	Track *float64 `json:"track"` // degrees from true north
}

// DecodeGPSD decodes one line of gpsd's JSON stream. ok is false for
// reports other than TPV (VERSION, DEVICES, WATCH, SKY...); a TPV without a
// 2D/3D fix gives a NoFix sample.
func DecodeGPSD(line []byte) (s Sample, ok bool, err error) {
	var r TPV
	if err := json.Unmarshal(line, &r); err != nil {
		return Sample{}, false, fmt.Errorf("%w: %w", ErrGPSDReport, err)
	}
	if r.Class != "TPV" {
		return Sample{}, false, nil
	}
	if r.Mode < 2 || r.Lat == nil || r.Lon == nil {
		return Sample{NoFix: true}, true, nil
	}
	if r.Time == "" {
		return Sample{}, false, ErrGPSDNoTime
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return Sample{}, false, fmt.Errorf("%w: time: %w", ErrGPSDReport, err)
	}
	f := unknownFix()
	f.Time = t.UTC()
	f.Lat, f.Lng = *r.Lat, *r.Lon
	switch {
	case r.Eph != nil:
		f.Accuracy = *r.Eph
	case r.Epx != nil && r.Epy != nil:
		f.Accuracy = math.Hypot(*r.Epx, *r.Epy)
	}
	if r.Speed != nil && *r.Speed >= 0 {
		f.Speed = *r.Speed
	}
	if r.Track != nil && *r.Track >= 0 && *r.Track < 360 {
		f.Heading = *r.Track
	}
	return Sample{Fix: f}, true, nil
}

// GPSD reads TPV reports from a gpsd daemon.
type GPSD struct {
	addr    string
	log     *slog.Logger
	skipped counters
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	sleep   func(ctx context.Context, d time.Duration) error
}

// NewGPSD returns a source for gpsd at addr (host:port, usually
// 127.0.0.1:2947).
func NewGPSD(addr string, log *slog.Logger) *GPSD {
	var d net.Dialer
	return &GPSD{addr: addr, log: log, dial: d.DialContext, sleep: sleep}
}

// Finite is false.
func (g *GPSD) Finite() bool { return false }

// Counters returns the reports skipped.
func (g *GPSD) Counters() map[string]uint64 { return g.skipped.snapshot() }

// Backoff between gpsd reconnections: it doubles from gpsdMinBackoff up to
// gpsdMaxBackoff while connections fail, and starts again from the minimum
// after a session that delivered reports (gpsd restarted, the link came back).
const (
	gpsdMinBackoff = 500 * time.Millisecond
	gpsdMaxBackoff = 30 * time.Second
)

// Run watches gpsd, reconnecting with backoff when the connection drops.
func (g *GPSD) Run(ctx context.Context, emit Emit) error {
	backoff := gpsdMinBackoff
	for {
		good := false
		err := g.session(ctx, func(s Sample) error { good = true; return emit(s) })
		if good {
			backoff = gpsdMinBackoff
		}
		var emitErr *emitError
		if errors.As(err, &emitErr) {
			return emitErr.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.log.Warn("gpsd connection", "addr", g.addr, "err", err, "retry_in", backoff)
		if err := g.sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, gpsdMaxBackoff)
	}
}

type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }

func (g *GPSD) session(ctx context.Context, emit Emit) error {
	conn, err := g.dial(ctx, "tcp", g.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, gpsdWatch); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), maxGPSDLine)
	for sc.Scan() {
		s, ok, err := DecodeGPSD(sc.Bytes())
		if err != nil {
			if errors.Is(err, ErrGPSDNoTime) {
				g.skipped.add(SkipGPSDNoTime)
			} else {
				g.skipped.add(SkipGPSDJSON)
			}
			continue
		}
		if !ok {
			continue
		}
		s.Read = time.Now()
		if err := emit(s); err != nil {
			return &emitError{err}
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		g.skipped.add(SkipGPSDTooLong)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
