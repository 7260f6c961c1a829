// Package source reads GPS positions from the device's receivers: gpsd over
// TCP, NMEA 0183 from a serial port or a file, a GPX replay, or a simulated
// courier riding real city streets.
//
// A source turns what it reads into Samples and hands them to a callback; it
// does not filter (that is package filter's job) and knows nothing of MQTT.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// Sample is one reading of a receiver.
type Sample struct {
	// Fix has Seq 0; the outbox numbers accepted fixes. Optional fields the
	// receiver did not give are wire.Unknown.
	Fix wire.Fix
	// NoFix is true when the receiver reported that it has no position
	// (gpsd mode < 2, NMEA RMC status V, GGA quality 0). Fix is then zero.
	NoFix bool
	// Read is when the sample was read, on the source's clock. For live
	// sources it is the wall clock; for replays it is the replayed time, so
	// that staleness is judged as it was when the track was recorded.
	Read time.Time
}

// Emit receives samples. An error stops the source and is returned by Run.
type Emit func(Sample) error

// Source produces samples until its input ends or ctx is done.
type Source interface {
	// Run emits samples. It returns nil when a finite source (a file) is
	// exhausted, ctx.Err() when cancelled, or the first error of emit.
	// Live sources (gpsd, a serial port, sim) reconnect on I/O errors and
	// only return on cancellation.
	Run(ctx context.Context, emit Emit) error
	// Finite reports whether the source ends by itself (file replays).
	Finite() bool
	// Counters returns what the source skipped, by reason (bad checksum,
	// garbage line, decode error...).
	Counters() map[string]uint64
}

// Options tune the sources that need it.
type Options struct {
	Logger *slog.Logger
	// Interval is the sampling period of simulated sources (profile
	// gps.read_interval_s). Zero means one second.
	Interval time.Duration
	// Seed makes simulated couriers reproducible; zero picks the time.
	Seed int64
}

// ErrSpec reports a --source value that cannot be understood.
var ErrSpec = errors.New("invalid source")

// Open parses a --source value:
//
//	gpsd:HOST:PORT           gpsd JSON protocol
//	nmea:/dev/ttyUSB0        NMEA 0183 from a serial device (configured with stty beforehand)
//	nmea-file:PATH[?speed=N] NMEA 0183 log replay
//	gpx:PATH[?speed=N]       GPX track replay, N times faster; speed=0 as fast as possible
//	sim:CITY                 simulated courier (casablanca, rabat, tanger)
func Open(spec string, opts Options) (Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w %q: want KIND:ARG", ErrSpec, spec)
	}
	switch kind {
	case "gpsd":
		return NewGPSD(rest, opts.Logger), nil
	case "nmea":
		return NewNMEASerial(rest, opts.Logger), nil
	case "nmea-file":
		path, speed, err := replayArgs(rest)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrSpec, spec, err)
		}
		return NewNMEAFile(path, speed, opts.Logger), nil
	case "gpx":
		path, speed, err := replayArgs(rest)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrSpec, spec, err)
		}
		return NewGPX(path, speed), nil
	case "sim":
		city, err := CityByName(rest)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrSpec, spec, err)
		}
		return NewSim(city, opts.Interval, opts.Seed), nil
	}
	return nil, fmt.Errorf("%w %q: unknown kind %q", ErrSpec, spec, kind)
}

// replayArgs splits "PATH?speed=N".
func replayArgs(s string) (path string, speed float64, err error) {
	path, query, _ := strings.Cut(s, "?")
	speed = 1
	if query == "" {
		return path, speed, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", 0, err
	}
	for k := range q {
		if k != "speed" {
			return "", 0, fmt.Errorf("unknown option %q", k)
		}
	}
	if v := q.Get("speed"); v != "" {
		speed, err = strconv.ParseFloat(v, 64)
		if err != nil || speed < 0 {
			return "", 0, fmt.Errorf("speed %q: want a number >= 0", v)
		}
	}
	return path, speed, nil
}

// counters is a small concurrent map of skip reasons.
type counters struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (c *counters) add(reason string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]uint64)
	}
	c.m[reason]++
	c.mu.Unlock()
}

func (c *counters) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// replay emits recorded samples paced by their own times, speed times faster
// (speed 0: no pacing). Fix times are re-based so that the replay ends at
// about the wall-clock time it finishes and no fix is ever in the future:
// with speed 1 the track is replayed live.
func replay(ctx context.Context, samples []Sample, speed float64, emit Emit) error {
	if len(samples) == 0 {
		return nil
	}
	var t0, tN time.Time
	for _, s := range samples {
		if s.NoFix {
			continue
		}
		if t0.IsZero() {
			t0 = s.Fix.Time
		}
		tN = s.Fix.Time
	}
	start := time.Now()
	span := tN.Sub(t0)
	shift := start.Sub(t0) - span
	if speed > 0 {
		shift += time.Duration(float64(span) / speed)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for _, s := range samples {
		if !s.NoFix {
			if speed > 0 {
				due := start.Add(time.Duration(float64(s.Fix.Time.Sub(t0)) / speed))
				if d := time.Until(due); d > 0 {
					if timer == nil {
						timer = time.NewTimer(d)
					} else {
						timer.Reset(d)
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-timer.C:
					}
				}
			}
			s.Fix.Time = s.Fix.Time.Add(shift).Truncate(time.Millisecond) // never in the future
			s.Read = s.Fix.Time
		} else {
			s.Read = time.Now()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(s); err != nil {
			return err
		}
	}
	return nil
}

// unknownFix is a Fix with every optional field unknown.
func unknownFix() wire.Fix {
	return wire.Fix{Accuracy: wire.Unknown, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
