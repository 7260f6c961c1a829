package app

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
)

// FerretDB logs every error reply it sends as a multi-line dump of the wire
// message. The backend expects some replies (its claims are inserts under
// unique indexes, TTL indexes are not implemented, the driver ends its
// sessions at shutdown): those are dropped. Any other reply becomes one line
// with its code name only; errmsg can quote document values (personal data).
var (
	ferretCodeName = regexp.MustCompile(`"codeName": "([A-Za-z0-9]+)"`)
	ferretErrmsg   = regexp.MustCompile(`"errmsg": "((?:[^"\\]|\\.)*)"`)
)

func ferretLine(msg string) (string, bool) {
	if !strings.Contains(msg, "\n") {
		return msg, strings.TrimSpace(msg) != ""
	}
	code := "unknown"
	if m := ferretCodeName.FindStringSubmatch(msg); m != nil {
		code = m[1]
	}
	errmsg := ""
	if m := ferretErrmsg.FindStringSubmatch(msg); m != nil {
		errmsg = m[1]
	}
	switch {
	case code == "DuplicateKey": // a claim lost to another writer: the design
		return "", false
	case code == "NotImplemented" && strings.Contains(errmsg, "expireAfterSeconds"): // EnsureTTL says so itself
		return "", false
	case code == "CommandNotFound" && strings.Contains(errmsg, "endSessions"): // driver at shutdown
		return "", false
	}
	first, _, _ := strings.Cut(msg, "\n")
	return "ferretdb error reply " + code + " (" + strings.TrimSuffix(strings.TrimSpace(first), ":") + ")", true
}

// oneLine drops records with an empty message (the embedded broker logs
// some at shutdown) and folds multi-line messages into one line.
type oneLine struct{ h slog.Handler }

func (w oneLine) Enabled(ctx context.Context, l slog.Level) bool { return w.h.Enabled(ctx, l) }

func (w oneLine) Handle(ctx context.Context, r slog.Record) error {
	msg := strings.TrimSpace(r.Message)
	if msg == "" {
		return nil
	}
	if strings.Contains(msg, "\n") {
		msg = strings.Join(strings.Fields(msg), " ")
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
	return w.h.Handle(ctx, out)
}

func (w oneLine) WithAttrs(as []slog.Attr) slog.Handler { return oneLine{w.h.WithAttrs(as)} }
func (w oneLine) WithGroup(g string) slog.Handler       { return oneLine{w.h.WithGroup(g)} }
