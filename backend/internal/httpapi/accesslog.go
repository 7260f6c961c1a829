package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
)

// HeaderRequestID carries the request id: taken from the client when it is
// a plain token (a proxy's id), otherwise made here; returned on every
// answer, in every problem document and in every log line of the request.
const HeaderRequestID = "X-Request-ID"

const requestIDKey = "request_id"

// requestID returns the request's id ("" outside the access log middleware).
func requestID(c *fiber.Ctx) string {
	id, _ := c.Locals(requestIDKey).(string)
	return id
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

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// accessLog is the outermost middleware: it gives the request an id and
// writes one line when the answer is complete: method, route template
// (never the raw path, which can hold a tracking token), status, latency,
// response bytes and the id. No query string, header or body is logged.
func (s *Server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	id := c.Get(HeaderRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	c.Locals(requestIDKey, id)
	c.Set(HeaderRequestID, id)
	if err := c.Next(); err != nil {
		// Answer here so the line carries the status and size sent.
		if herr := s.errorHandler(c, err); herr != nil {
			s.log.Error("error response not written", "request_id", id, "err", herr)
			c.Status(fiber.StatusInternalServerError)
		}
	}
	if !s.opts.NoAccessLog {
		size := -1 // a streamed body (event stream) is still being written: reading it here would wait for its end
		if !c.Response().IsBodyStream() {
			size = len(c.Response().Body())
		}
		// LogAttrs: the same line as Info with key-value pairs, without
		// boxing each value.
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "http", slog.String("method", c.Method()),
			slog.String("route", c.Route().Path), slog.Int("status", c.Response().StatusCode()),
			slog.Float64("ms", float64(time.Since(start).Microseconds())/1000), slog.Int("bytes", size), slog.String("request_id", id))
	}
	return nil
}
