package httpapi

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/livemap"
)

// The near= answer is the dispatcher's hot query: it is written by hand
// into a pooled buffer rather than through encoding/json's reflection. The
// output is byte for byte what encoding/json makes of courierJSON
// (TestNearJSONMatchesEncodingJSON).

var nearBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var hitBufs = sync.Pool{New: func() any { h := make([]livemap.Hit, 0, 64); return &h }}

// appendCouriersJSON writes {"couriers":[...]} for hits; names, if not
// nil, holds each hit's display name.
func appendCouriersJSON(b []byte, hits []livemap.Hit, names []string) []byte {
	b = append(b, `{"couriers":[`...)
	for i := range hits {
		if i > 0 {
			b = append(b, ',')
		}
		n := ""
		if names != nil {
			n = names[i]
		}
		b = appendCourierJSON(b, &hits[i].Courier, n, hits[i].DistanceM, true)
	}
	return append(b, "]}"...)
}

// appendCourierJSON writes courierOut(c, dist, withDist), named, as JSON.
func appendCourierJSON(b []byte, c *livemap.Courier, name string, dist float64, withDist bool) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.ID)
	if name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, name)
	}
	if c.HasFix {
		b = append(b, `,"lat":`...)
		b = appendJSONFloat(b, c.Fix.Lat)
		b = append(b, `,"lng":`...)
		b = appendJSONFloat(b, c.Fix.Lng)
	}
	if withDist {
		b = append(b, `,"distance_m":`...)
		b = appendDecimetres(b, dist)
	}
	if c.HasFix {
		b = append(b, `,"cell":"`...)
		b = appendHex(b, uint64(c.Cell9))
		b = append(b, '"')
	}
	if c.Status < livemap.Status(len(statusJSON)) {
		b = append(b, statusJSON[c.Status]...)
	} else {
		b = append(b, `,"status":`...)
		b = appendJSONString(b, c.Status.String())
	}
	b = append(b, `,"online":`...)
	b = strconv.AppendBool(b, c.Online)
	b = append(b, `,"on_shift":`...)
	b = strconv.AppendBool(b, c.OnShift)
	b = append(b, `,"load":`...)
	b = strconv.AppendInt(b, int64(c.Load), 10)
	b = append(b, `,"capacity":`...)
	b = strconv.AppendInt(b, int64(c.Capacity), 10)
	if c.Vehicle != "" {
		b = append(b, `,"vehicle":`...)
		b = appendJSONString(b, c.Vehicle)
	}
	if c.HasFix {
		if c.Fix.Battery >= 0 {
			b = append(b, `,"battery":`...)
			b = strconv.AppendInt(b, int64(c.Fix.Battery), 10)
		}
		b = append(b, `,"updated_at":"`...)
		b = appendRFC3339(b, c.Fix.Time)
		b = append(b, '"')
	}
	return append(b, '}')
}

// statusJSON is `,"status":"<name>"` for each status String names.
var statusJSON = func() (t [4][]byte) {
	for i := range t {
		t[i] = appendJSONString([]byte(`,"status":`), livemap.Status(i).String())
	}
	return t
}()

// hexPairs is "000102...ff": two hex digits per byte value.
const hexPairs = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
	"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" +
	"606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" +
	"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" +
	"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" +
	"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" +
	"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

// appendHex writes v in lower-case hexadecimal without leading zeros, as
// strconv.AppendUint(b, v, 16) does (which goes the general way for base 16).
func appendHex(b []byte, v uint64) []byte {
	var buf [16]byte
	for i := 14; i >= 0; i -= 2 {
		p := int(v&0xff) * 2
		buf[i], buf[i+1] = hexPairs[p], hexPairs[p+1]
		v >>= 8
	}
	i := 0
	for i < 15 && buf[i] == '0' {
		i++
	}
	return append(b, buf[i:]...)
}

// appendRFC3339 writes t.UTC().Format(time.RFC3339) for the years 1-9999
// (whole seconds, "Z"); other years go through time's own formatting.
func appendRFC3339(b []byte, t time.Time) []byte {
	u := t.Unix()
	if u < minCivil || u >= maxCivil {
		return t.UTC().AppendFormat(b, time.RFC3339)
	}
	return append(appendCivil(b, u), 'Z')
}

// appendFraction writes frac, a fraction of digits (at most 9) decimal
// places, as '.' and its digits without trailing zeros; nothing for 0.
func appendFraction(b []byte, frac uint64, digits int) []byte {
	if frac == 0 {
		return b
	}
	for frac%10 == 0 {
		frac /= 10
		digits--
	}
	var d [10]byte
	d[0] = '.'
	for i := digits; i > 0; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(b, d[:digits+1]...)
}

// appendRFC3339Nano writes t.Format(time.RFC3339Nano) (t's own zone) for
// the years 1-9999; other years go through time's own formatting.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	_, off := t.Zone()
	u := t.Unix() + int64(off)
	if u < minCivil || u >= maxCivil {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	b = appendCivil(b, u)
	b = appendFraction(b, uint64(t.Nanosecond()), 9)
	if off == 0 {
		return append(b, 'Z')
	}
	sign := byte('+')
	zone := off / 60 // minutes; seconds of an offset are not written
	if zone < 0 {
		sign, zone = '-', -zone
	}
	h, m := zone/60, zone%60
	return append(b, sign, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10))
}

// The seconds since 1970 of 0001-01-01 and 10000-01-01: appendCivil's range.
const minCivil, maxCivil = -62135596800, 253402300800

// appendCivil writes "YYYY-MM-DDTHH:MM:SS" for u seconds since 1970 (as
// UTC), minCivil <= u < maxCivil, by unsigned integer arithmetic.
func appendCivil(b []byte, u int64) []byte {
	s1 := uint64(u - minCivil) // seconds since 0001-01-01
	days, sec := s1/86400, uint32(s1%86400)
	// Civil date of a day count (H. Hinnant, "chrono-compatible low-level
	// date algorithms"): eras of 400 years from 0000-03-01, which is 306
	// days before 0001-01-01.
	z := days + 306
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := uint32(doy - (153*mp+2)/5 + 1)
	month := uint32(mp + 3)
	if month > 12 {
		month -= 12
	}
	year := uint32(yoe + era*400)
	if month <= 2 {
		year++
	}
	hour, minute, s := sec/3600, sec/60%60, sec%60
	return append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+s/10), byte('0'+s%10))
}

// jsonPlain marks the bytes encoding/json copies into a string as they
// are: printable ASCII other than the quote, the backslash and the HTML
// characters it escapes.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString quotes s as encoding/json does (HTML-safe escapes). A
// string with non-ASCII bytes goes through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	// Most strings (ids, names, vehicles) need no escape: one pass over
	// them, then one copy.
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	for j := i; j < len(s); j++ {
		if s[j] >= utf8.RuneSelf {
			q, err := json.Marshal(s)
			if err != nil {
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendDecimetres writes math.Round(m*10)/10 as encoding/json does,
// without the shortest-float search: for a whole number k of decimetres
// below 10^15, k/10 is the float nearest to the decimal k/10 and floats
// there are less than 0.05 apart, so the shortest text that reads back as
// it is k/10's own digits, with the ".0" left out.
func appendDecimetres(b []byte, m float64) []byte {
	k := math.Round(m * 10)
	if !(k >= 1 && k < 1e15) { // 0, negative, huge, NaN: the general way
		return appendJSONFloat(b, k/10)
	}
	n := int64(k)
	b = strconv.AppendInt(b, n/10, 10)
	if d := n % 10; d != 0 {
		b = append(b, '.', byte('0'+d))
	}
	return b
}

// appendJSONFloat formats f as encoding/json formats a float64. A number
// of at most seven decimals (positions from the wire's 1e-6 degree or a
// phone's 1e-7, latencies in whole microseconds as milliseconds) is written
// from its integer count of 1e-7 without the shortest-float search: when
// k/1e7 is f, the decimal k/1e7 reads back as f, and below 1e7 floats are
// less than 1e-8 apart, so no other decimal of as few digits does; the
// shortest text of f is then k/1e7's own digits, trailing zeros left out.
func appendJSONFloat(b []byte, f float64) []byte {
	if abs := math.Abs(f); abs >= 1e-6 && abs < 1e7 {
		if k := math.Round(f * 1e7); k/1e7 == f {
			n := int64(k)
			if n < 0 {
				b = append(b, '-')
				n = -n
			}
			u := uint64(n)
			b = strconv.AppendUint(b, u/1e7, 10)
			return appendFraction(b, u%1e7, 7)
		}
	}
	return appendJSONFloatShortest(b, f)
}

// appendJSONFloatShortest is appendJSONFloat by strconv's shortest search.
func appendJSONFloatShortest(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, "null"...) // never produced: the index holds checked fixes
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
