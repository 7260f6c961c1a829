package broker

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// The broker's log carries no packet contents and no credentials: mochi
// logs whole packets (a second CONNECT with its password, every refused
// PUBLISH with its payload, GPS included), and a device could grow the log
// at will. Its records pass through quietLog, which keeps only the
// attributes below, and every line is rate-limited per message and client:
// one line per refusal with its reason and client id, then a count of what
// was suppressed on the next line that passes.

// keptAttrs are the attributes that may reach the log from mochi.
var keptAttrs = map[string]bool{"error": true, "client": true, "listener": true, "hook": true, "remote": true,
	"id": true, "protocol": true, "address": true, "version": true, "len": true, "reason": true, "suppressed": true}

// maxClientID bounds how much of a (device-chosen) client id is logged.
const maxClientID = 64

// limiter lets one line per key through per interval.
type limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	seen map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLimiter(every time.Duration, now func() time.Time) *limiter {
	return &limiter{every: every, now: now, seen: map[string]*limitState{}}
}

// allow reports whether a line for key may be written now, and how many
// were suppressed since the last one.
func (l *limiter) allow(key string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.seen[key]
	if st == nil {
		if len(l.seen) >= 10_000 { // bounded: a flood of client ids forgets old keys
			for k, v := range l.seen {
				if now.Sub(v.last) >= l.every {
					delete(l.seen, k)
				}
			}
			if len(l.seen) >= 10_000 {
				return false, 0
			}
		}
		l.seen[key] = &limitState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// quietLog is the slog.Handler mochi logs through.
type quietLog struct {
	h     slog.Handler
	lim   *limiter
	attrs []slog.Attr // from WithAttrs, already filtered
}

func newQuietLog(h slog.Handler, lim *limiter) *quietLog { return &quietLog{h: h, lim: lim} }

func (q *quietLog) Enabled(ctx context.Context, l slog.Level) bool { return q.h.Enabled(ctx, l) }

func (q *quietLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(q.attrs...)
	client, reason := "", ""
	r.Attrs(func(a slog.Attr) bool {
		if !keptAttrs[a.Key] {
			return true
		}
		if a.Key == "reason" {
			reason = a.Value.String()
		}
		if a.Key == "client" {
			client = clip(a.Value.String())
			a = slog.String("client", client)
		}
		if a.Value.Kind() == slog.KindAny {
			if err, ok := a.Value.Any().(error); ok {
				a = slog.String(a.Key, err.Error())
			} else {
				return true // structured values (packets, options) stay out
			}
		}
		out.AddAttrs(a)
		return true
	})
	ok, suppressed := q.lim.allow(r.Message + "\x00" + reason + "\x00" + client)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return q.h.Handle(ctx, out)
}

func (q *quietLog) WithAttrs(as []slog.Attr) slog.Handler {
	n := &quietLog{h: q.h, lim: q.lim, attrs: append([]slog.Attr(nil), q.attrs...)}
	for _, a := range as {
		if keptAttrs[a.Key] && a.Value.Kind() != slog.KindAny {
			n.attrs = append(n.attrs, a)
		}
	}
	return n
}

func (q *quietLog) WithGroup(string) slog.Handler { return q } // mochi uses no groups; a group could hide a packet

func clip(s string) string {
	if len(s) > maxClientID {
		return strconv.Quote(s[:maxClientID]) + "…"
	}
	return s
}
