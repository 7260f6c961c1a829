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
		b = strconv.AppendUint(b, uint64(c.Cell9), 16)
		b = append(b, '"')
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, c.Status.String())
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
		b = c.Fix.Time.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, '"')
	}
	return append(b, '}')
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

// appendJSONFloat formats f as encoding/json formats a float64.
func appendJSONFloat(b []byte, f float64) []byte {
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
