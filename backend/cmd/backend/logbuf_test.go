package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a writer the buffer's timer may write to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogBufferWritesWarningsAtOnce: info lines wait in the buffer, a
// warning goes out at once with every line before it, in order; a full
// buffer goes out by itself; Close writes the rest.
func TestLogBufferWritesWarningsAtOnce(t *testing.T) {
	var out lockedBuffer
	buf := newLogBuffer(&out)
	h := logHandler{Handler: slog.NewJSONHandler(buf, nil), buf: buf}
	if h.JSONLines() == nil {
		t.Fatal("the bare handler takes no whole lines")
	}
	log := slog.New(h).With("svc", "test")
	if log.Handler().(logHandler).JSONLines() != nil {
		t.Fatal("a handler with attributes takes whole lines (they would lack the attributes)")
	}
	log.Info("first")
	log.Info("second")
	if got := out.String(); got != "" && !strings.Contains(got, `"msg":"second"`) {
		t.Fatalf("partial flush: %q", got) // only the timer may have written (both lines)
	}
	log.Warn("trouble")
	got := out.String()
	i1, i2, i3 := strings.Index(got, `"msg":"first"`), strings.Index(got, `"msg":"second"`), strings.Index(got, `"msg":"trouble"`)
	if i1 < 0 || i2 < i1 || i3 < i2 || !strings.Contains(got, `"svc":"test"`) {
		t.Fatalf("after a warning the log holds %q", got)
	}
	before := len(got)
	line := strings.Repeat("x", 1000)
	for range logBufferMax/1000 + 1 {
		log.Info(line)
	}
	if len(out.String()) <= before {
		t.Fatal("a full buffer was not written")
	}
	log.Info("last")
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(out.String()), `"msg":"last","svc":"test"}`) {
		t.Fatalf("Close did not write the last line: ...%q", out.String()[max(0, len(out.String())-200):])
	}
}
