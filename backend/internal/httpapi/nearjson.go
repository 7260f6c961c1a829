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

// appendCouriersJSON writes {"couriers":[...]} for hits; name, if not
// nil, gives each courier's display name.
func appendCouriersJSON(b []byte, hits []livemap.Hit, name func(id string) string) []byte {
	b = append(b, `{"couriers":[`...)
	for i := range hits {
		if i > 0 {
			b = append(b, ',')
		}
		n := ""
		if name != nil {
			n = name(hits[i].ID)
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
		b = appendJSONFloat(b, math.Round(dist*10)/10)
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

// appendJSONString quotes s as encoding/json does (HTML-safe escapes). A
// string with non-ASCII bytes goes through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			q, err := json.Marshal(s)
			if err != nil {
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Most strings (ids, names, vehicles) need no escape: copy them whole.
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\' && s[i] != '<' && s[i] != '>' && s[i] != '&' {
		i++
	}
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
