package source

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A small NMEA 0183 parser for the sentences the decoder uses (RMC, GGA,
// GNS, GLL, VTG, ZDA), tolerant where gpsd is: junk before the '$' (and a
// doubled "$$") is skipped, trailing fields may be missing, fields after
// the ones needed are never looked at (so an RMC without its
// magnetic-variation direction still gives its date). The checksum is
// required and checked.

// Errors of parseSentence; the decoder counts lines by them.
var (
	errNoSentence  = errors.New("nmea: no sentence")          // no '$', or no '*hh' checksum
	errChecksum    = errors.New("nmea: checksum mismatch")    // a corrupted line
	errUnsupported = errors.New("nmea: sentence not used")    // GSV, GSA, proprietary...
	errField       = errors.New("nmea: field cannot be read") // a field present but malformed
)

// tod is a UTC time of day.
type tod struct {
	valid                bool
	hour, minute, second int
	millisecond          int
}

// date is a UTC calendar date.
type date struct {
	valid      bool
	dd, mm, yy int // yy: two digits
}

// sentence is what one line says, in the decoder's terms.
type sentence struct {
	kind string // RMC, GGA, GNS, GLL, VTG, ZDA
	time tod
	date date // RMC, ZDA
	// fix: the sentence says there is a position (RMC A, GGA quality > 0,
	// GNS mode not all N, GLL A); noFix: it says there is none.
	fix, noFix bool
	lat, lng   float64
	hasPos     bool
	speedKn    float64
	hasSpeed   bool
	course     float64
	hasCourse  bool
	hdop       float64
	hasHDOP    bool
}

// parseSentence reads one line.
func parseSentence(line string) (sentence, error) {
	// Resynchronise on the last '$': a sentence never contains one, so
	// whatever precedes it is line noise, a tag block or a repeated '$'.
	start := strings.LastIndexByte(line, '$')
	if start < 0 {
		return sentence{}, errNoSentence
	}
	line = line[start+1:]
	star := strings.LastIndexByte(line, '*')
	if star < 0 || len(line) < star+3 {
		return sentence{}, errNoSentence
	}
	want, err := strconv.ParseUint(line[star+1:star+3], 16, 8)
	if err != nil {
		return sentence{}, errNoSentence
	}
	body := line[:star]
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	if sum != byte(want) {
		return sentence{}, errChecksum
	}
	f := strings.Split(body, ",")
	addr := f[0]
	if len(addr) != 5 || addr[0] == 'P' {
		return sentence{}, errUnsupported
	}
	s := sentence{kind: addr[2:]}
	f = f[1:]
	get := func(i int) string {
		if i < len(f) {
			return strings.TrimSpace(f[i])
		}
		return ""
	}
	switch s.kind {
	case "RMC":
		// time, status, lat, N/S, lon, E/W, speed (kn), course, date,
		// magnetic variation, its E/W, mode (2.3+), nav status (4.1).
		if s.time, err = parseTOD(get(0)); err != nil {
			return s, err
		}
		if s.date, err = parseDate(get(8)); err != nil {
			return s, err
		}
		switch {
		case get(1) == "A" && get(11) != "N":
			s.fix = true
		case get(1) == "V", get(1) == "", get(11) == "N":
			s.noFix = true
		default:
			return s, fmt.Errorf("%w: RMC status %q", errField, get(1))
		}
		if s.fix {
			if err := s.position(get(2), get(3), get(4), get(5)); err != nil {
				return s, err
			}
		}
		if s.speedKn, s.hasSpeed, err = optFloat(get(6)); err != nil {
			return s, err
		}
		if s.course, s.hasCourse, err = optFloat(get(7)); err != nil {
			return s, err
		}
	case "GGA", "GNS":
		// time, lat, N/S, lon, E/W, quality (GGA) or mode per system (GNS),
		// satellites, HDOP, altitude...
		if s.time, err = parseTOD(get(0)); err != nil {
			return s, err
		}
		q := get(5)
		if s.kind == "GGA" {
			// 0 invalid; 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 dead
			// reckoning, 7 manual, 8 simulator: gpsd reports a fix for all.
			if len(q) > 1 || q != "" && (q[0] < '0' || q[0] > '9') {
				return s, fmt.Errorf("%w: GGA quality %q", errField, q)
			}
			s.fix = q != "" && q != "0"
		} else {
			// One mode letter per constellation: N none, A autonomous,
			// D differential, P precise, R/F RTK, E estimated, M manual, S simulator.
			if strings.Trim(q, "NADPRFEMS") != "" {
				return s, fmt.Errorf("%w: GNS mode %q", errField, q)
			}
			s.fix = strings.ContainsAny(q, "ADPRFEMS")
		}
		s.noFix = !s.fix
		if s.fix {
			if err := s.position(get(1), get(2), get(3), get(4)); err != nil {
				return s, err
			}
		}
		if s.hdop, s.hasHDOP, err = optFloat(get(7)); err != nil {
			return s, err
		}
	case "GLL":
		// lat, N/S, lon, E/W, time, status (2.0+), mode (2.3+)
		if s.time, err = parseTOD(get(4)); err != nil {
			return s, err
		}
		status, mode := get(5), get(6)
		s.fix = (status == "A" || status == "" && get(0) != "") && mode != "N"
		s.noFix = !s.fix
		if s.fix {
			if err := s.position(get(0), get(1), get(2), get(3)); err != nil {
				return s, err
			}
		}
	case "VTG":
		// NMEA 2.3+: track T, track M, speed N, speed K, mode; older
		// receivers omit the unit letters (track, magnetic, knots, km/h).
		kn := get(4)
		if get(1) != "T" && get(1) != "" {
			kn = get(2)
		}
		if s.course, s.hasCourse, err = optFloat(get(0)); err != nil {
			return s, err
		}
		if s.speedKn, s.hasSpeed, err = optFloat(kn); err != nil {
			return s, err
		}
	case "ZDA":
		// time, day, month, year, zone hours, zone minutes
		if s.time, err = parseTOD(get(0)); err != nil {
			return s, err
		}
		d, errD := strconv.Atoi(get(1))
		m, errM := strconv.Atoi(get(2))
		y, errY := strconv.Atoi(get(3))
		if errD == nil && errM == nil && errY == nil && d >= 1 && d <= 31 && m >= 1 && m <= 12 && y >= 1980 && y < 2100 {
			s.date = date{valid: true, dd: d, mm: m, yy: y % 100}
		}
	default:
		return s, errUnsupported
	}
	return s, nil
}

// position reads a latitude/longitude pair in NMEA's (d)ddmm.mmmm form.
func (s *sentence) position(lat, ns, lon, ew string) error {
	la, err := parseDM(lat, 90)
	if err != nil {
		return err
	}
	lo, err := parseDM(lon, 180)
	if err != nil {
		return err
	}
	switch ns {
	case "N":
	case "S":
		la = -la
	default:
		return fmt.Errorf("%w: latitude hemisphere %q", errField, ns)
	}
	switch ew {
	case "E":
	case "W":
		lo = -lo
	default:
		return fmt.Errorf("%w: longitude hemisphere %q", errField, ew)
	}
	s.lat, s.lng, s.hasPos = la, lo, true
	return nil
}

func parseDM(v string, limit float64) (float64, error) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x < 0 || strings.ContainsAny(v, "eExXpPiInN+-_") {
		return 0, fmt.Errorf("%w: coordinate %q", errField, v)
	}
	deg := math.Floor(x / 100)
	minutes := x - deg*100
	out := deg + minutes/60
	if minutes >= 60 || out > limit {
		return 0, fmt.Errorf("%w: coordinate %q", errField, v)
	}
	return out, nil
}

// optFloat reads an optional non-negative number: ok is false when the
// field is empty.
func optFloat(v string) (float64, bool, error) {
	if v == "" {
		return 0, false, nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x < 0 || math.IsInf(x, 0) || strings.ContainsAny(v, "xXpPiInN_") {
		return 0, false, fmt.Errorf("%w: number %q", errField, v)
	}
	return x, true, nil
}

// parseTOD reads hhmmss[.s...]; an empty field is a zero, invalid tod.
func parseTOD(v string) (tod, error) {
	if v == "" {
		return tod{}, nil
	}
	if len(v) < 6 {
		return tod{}, fmt.Errorf("%w: time %q", errField, v)
	}
	for i := 0; i < len(v); i++ {
		if (v[i] < '0' || v[i] > '9') && !(i == 6 && v[i] == '.') {
			return tod{}, fmt.Errorf("%w: time %q", errField, v)
		}
	}
	h, _ := strconv.Atoi(v[:2])
	m, _ := strconv.Atoi(v[2:4])
	sec, err := strconv.ParseFloat(v[4:], 64)
	if err != nil || h > 23 || m > 59 || sec >= 61 {
		return tod{}, fmt.Errorf("%w: time %q", errField, v)
	}
	whole, frac := math.Modf(sec)
	t := tod{valid: true, hour: h, minute: m, second: int(whole), millisecond: int(math.Round(frac * 1000))}
	if t.millisecond == 1000 { // .9996 rounds up: carry (a leap second 60 stays as gpsd shows it)
		t.millisecond = 999
	}
	return t, nil
}

// parseDate reads ddmmyy; an empty field is a zero, invalid date.
func parseDate(v string) (date, error) {
	if v == "" {
		return date{}, nil
	}
	if len(v) != 6 {
		return date{}, fmt.Errorf("%w: date %q", errField, v)
	}
	d, errD := strconv.Atoi(v[:2])
	m, errM := strconv.Atoi(v[2:4])
	y, errY := strconv.Atoi(v[4:])
	if errD != nil || errM != nil || errY != nil || d < 1 || d > 31 || m < 1 || m > 12 || y < 0 {
		return date{}, fmt.Errorf("%w: date %q", errField, v)
	}
	return date{valid: true, dd: d, mm: m, yy: y}, nil
}
