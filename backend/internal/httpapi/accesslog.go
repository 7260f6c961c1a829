package httpapi

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tawsil/tawsil/backend/internal/auth"
)

// HeaderRequestID carries the request id: taken from the client when it is
// a plain token (a proxy's id), otherwise made here; returned on every
// answer, in every problem document and in every log line of the request.
const HeaderRequestID = "X-Request-ID"

const requestIDKey = "request_id"

// Response header names as fasthttp's Set normalizes them, for SetCanonical
// (Set copies and normalizes its key on every call): the same bytes on the
// wire (TestCanonicalHeadersAsSet).
var (
	canonRequestID    = []byte("X-Request-Id")
	canonCacheControl = []byte(fiber.HeaderCacheControl)
	noStoreValue      = []byte("no-store")
)

// reqID is a request's id as the access log keeps it in the request's
// locals, and the request's principal once authn has verified its token:
// one allocation for a made id's bytes, the principal and the value the
// locals hold (a string or a Principal there would each be another, their
// boxing). Made afresh for every request, never pooled: nothing of one
// request's principal can reach another.
type reqID struct {
	s      string   // the id
	b      [16]byte // a made id's digits (s points here)
	authed bool     // p is set
	p      auth.Principal
}

// requestID returns the request's id ("" outside the access log middleware).
func requestID(c *fiber.Ctx) string {
	if r := requestOf(c); r != nil {
		return r.s
	}
	return ""
}

// requestOf returns what the access log keeps of the request (nil outside
// the access log middleware).
func requestOf(c *fiber.Ctx) *reqID {
	r, _ := c.Locals(requestIDKey).(*reqID)
	return r
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// newRequestID is 16 random hex digits. An id correlates a request's
// answer and log lines and is no secret: math/rand/v2's generator (the
// runtime's ChaCha8 per thread, seeded by the system) gives 64 bits as
// unique as crypto/rand's, without its per-call cost.
func newRequestID() string {
	var b [16]byte
	fillRequestID(&b)
	return string(b[:])
}

// fillRequestID writes a new request id into b.
func fillRequestID(b *[16]byte) {
	const digits = "0123456789abcdef"
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
}

// accessLog is the outermost middleware: it gives the request an id,
// counts the answer in the request metrics (by route template and the
// status class sent) and writes one line when the answer is complete:
// method, route template (never the raw path, which can hold a tracking
// token), status, latency, response bytes and the id. No query string,
// header or body is logged.
func (s *Server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	r := &reqID{s: c.Get(HeaderRequestID)}
	if !validRequestID(r.s) {
		fillRequestID(&r.b)
		r.s = unsafe.String(&r.b[0], len(r.b)) // r.b is not written again
	}
	id := r.s
	c.Locals(requestIDKey, r)
	// id is a plain token (validRequestID or hex): nothing for Set's
	// newline removal to remove.
	c.Response().Header.SetCanonical(canonRequestID, utils.UnsafeBytes(id))
	if err := c.Next(); err != nil {
		// Answer here, so that the status counted and logged is the one
		// sent (a mapped domain error is a 4xx, not a 5xx).
		if herr := s.errorHandler(c, err); herr != nil {
			s.log.Error("error response not written", "request_id", id, "err", herr)
			c.Status(fiber.StatusInternalServerError)
		}
	}
	end := time.Now()
	status := c.Response().StatusCode()
	took := end.Sub(start)
	route := c.Route().Path
	s.routeMetrics(route).observe(status, took)
	if !s.opts.NoAccessLog {
		size := -1 // a streamed body (event stream) is still being written: reading it here would wait for its end
		if !c.Response().IsBodyStream() {
			size = len(c.Response().Body())
		}
		ms := float64(took.Microseconds()) / 1000
		if !s.writeAccessLine(end, c.Method(), route, status, ms, size, id) {
			// LogAttrs: the same line as Info with key-value pairs, without
			// boxing each value.
			a := accessAttrs(c.Method(), route, status, ms, size, id)
			s.log.LogAttrs(context.Background(), slog.LevelInfo, "http", a[:]...)
		}
	}
	return nil
}

// accessAttrs are the access line's fields, in order.
func accessAttrs(method, route string, status int, ms float64, size int, id string) [6]slog.Attr {
	return [6]slog.Attr{slog.String("method", method), slog.String("route", route), slog.Int("status", status),
		slog.Float64("ms", ms), slog.Int("bytes", size), slog.String("request_id", id)}
}

// JSONLineWriter is a log handler that writes what slog's JSONHandler
// writes, with no attributes or groups added to it, and takes whole lines
// formatted elsewhere in that format. With one, the access log formats its
// line itself (a sixth of the cost of slog's way for this line, which
// formats every request's float through encoding/json) and hands it over.
type JSONLineWriter interface {
	slog.Handler
	// JSONLines returns the writer of whole lines, or nil when the
	// handler cannot take them (attributes or groups were added).
	JSONLines() io.Writer
}

var accessLines = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// writeAccessLine writes the access line straight to the log's JSON line
// writer, byte for byte what slog's JSONHandler makes of the LogAttrs call
// in accessLog (TestAccessLineMatchesSlog). It reports false when it did
// not: no such writer, info not enabled (the handler decides, as always)
// or a string that slog would escape.
func (s *Server) writeAccessLine(t time.Time, method, route string, status int, ms float64, size int, id string) bool {
	h, ok := s.log.Handler().(JSONLineWriter)
	if !ok || !plainJSON(method) || !plainJSON(route) || !plainJSON(id) {
		return false
	}
	if y := t.Year(); y >= 10000 || y < 0 {
		return false
	}
	w := h.JSONLines()
	if w == nil {
		return false
	}
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		return true // nothing to write, as with slog
	}
	bp := accessLines.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], t, method, route, status, ms, size, id)
	_, _ = w.Write(b) // as with slog: a log line that cannot be written is not the request's failure
	*bp = b
	if cap(b) <= 4096 {
		accessLines.Put(bp)
	}
	return true
}

// appendAccessLine is the access line for strings that need no escape.
func appendAccessLine(b []byte, t time.Time, method, route string, status int, ms float64, size int, id string) []byte {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Nano(b, t)
	b = append(b, `","level":"INFO","msg":"http","method":"`...)
	b = append(b, method...)
	b = append(b, `","route":"`...)
	b = append(b, route...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"ms":`...)
	b = appendJSONFloat(b, ms)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `,"request_id":"`...)
	b = append(b, id...)
	return append(b, "\"}\n"...)
}

// plainJSON reports whether s is written as it is inside a JSON string by
// both slog and encoding/json (printable ASCII, no quote, backslash or
// HTML character).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			return false
		}
	}
	return true
}

// statusClasses are the status labels of HTTPRequests, made once.
var statusClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// routeMetrics are one route's request counters (one per status class,
// made at the first answer of that class) and latency histogram, looked
// up by label once rather than per request.
type routeMetrics struct {
	route    string
	vec      *prometheus.CounterVec
	requests [5]atomic.Pointer[prometheus.Counter]
	duration prometheus.Observer
}

// maxRouteMetrics bounds the cache; the routes are the app's own
// templates, so it is never reached (past it, lookups go by label).
const maxRouteMetrics = 1024

func (s *Server) routeMetrics(route string) *routeMetrics {
	if rm, ok := s.routeM.Load(route); ok {
		return rm.(*routeMetrics)
	}
	route = strings.Clone(route)
	rm := &routeMetrics{route: route, vec: s.m.HTTPRequests, duration: s.m.HTTPDuration.WithLabelValues(route)}
	if s.routeN.Load() < maxRouteMetrics {
		if v, loaded := s.routeM.LoadOrStore(route, rm); loaded {
			return v.(*routeMetrics)
		}
		s.routeN.Add(1)
	}
	return rm
}

func (rm *routeMetrics) observe(status int, took time.Duration) {
	class := 4 // 5xx
	if status >= 100 && status < 600 {
		class = status/100 - 1
	}
	c := rm.requests[class].Load()
	if c == nil {
		n := rm.vec.WithLabelValues(rm.route, statusClasses[class])
		c = &n
		rm.requests[class].Store(c)
	}
	(*c).Inc()
	rm.duration.Observe(took.Seconds())
}
