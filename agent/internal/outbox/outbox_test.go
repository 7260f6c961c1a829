package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// store is what both implementations offer.
type store interface {
	Enqueue(wire.Fix) (wire.Fix, error)
	PeekAfter(after uint64, n int) ([]wire.Fix, error)
	Remove([]uint64) error
	Depth() int
	LastSeq() uint64
	Dropped() uint64
}

var (
	_ store = (*Outbox)(nil)
	_ store = (*Memory)(nil)
)

func fix(i int) wire.Fix {
	return wire.Fix{Time: time.Date(2025, 6, 12, 9, 0, i, 0, time.UTC), Lat: 33.5925 + float64(i)*1e-4, Lng: -7.6186,
		Accuracy: 6.5, Speed: 7.25, Heading: 48.3, Battery: 77}
}

func mustOpen(tb testing.TB, dir string, max int) *Outbox {
	tb.Helper()
	o, err := Open(dir, max, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { o.Close() })
	return o
}

func mustEnqueue(tb testing.TB, s store, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Enqueue(fix(i)); err != nil {
			tb.Fatal(err)
		}
	}
}

func seqs(fs []wire.Fix) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.Seq
	}
	return out
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFIFOSemantics(t *testing.T) {
	impls := map[string]func(t *testing.T) store{
		"bbolt":  func(t *testing.T) store { return mustOpen(t, t.TempDir(), 5) },
		"memory": func(t *testing.T) store { return NewMemory(5, 0) },
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			mustEnqueue(t, s, 7) // seqs 1..7, bound 5: 1 and 2 dropped
			if got := s.Depth(); got != 5 {
				t.Fatalf("depth %d, want 5", got)
			}
			if got := s.Dropped(); got != 2 {
				t.Fatalf("dropped %d, want 2", got)
			}
			got, err := s.PeekAfter(0, 3)
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint64{3, 4, 5}; !equal(seqs(got), want) {
				t.Fatalf("peek %v, want %v", seqs(got), want)
			}
			if got[0].Lat != fix(2).Lat || got[0].Battery != 77 || got[0].Speed != 7.25 {
				t.Fatalf("fix changed in the outbox: %+v", got[0])
			}
			next, err := s.PeekAfter(5, 10)
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint64{6, 7}; !equal(seqs(next), want) {
				t.Fatalf("peek after 5: %v, want %v", seqs(next), want)
			}
			if err := s.Remove([]uint64{3, 4, 5, 99}); err != nil {
				t.Fatal(err)
			}
			if got := s.Depth(); got != 2 {
				t.Fatalf("depth after remove %d, want 2", got)
			}
			if s.LastSeq() != 7 {
				t.Fatalf("last seq %d, want 7", s.LastSeq())
			}
		})
	}
}

func TestSequenceSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, o, 3)
	if err := o.Remove([]uint64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := o.SetTaskSeq(41); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o = mustOpen(t, dir, 1000)
	f, err := o.Enqueue(fix(9))
	if err != nil {
		t.Fatal(err)
	}
	if f.Seq != 4 {
		t.Fatalf("seq after reopen %d, want 4: numbers must never repeat", f.Seq)
	}
	if ts, err := o.TaskSeq(); err != nil || ts != 41 {
		t.Fatalf("task seq %d, %v; want 41", ts, err)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	tests := []struct {
		name string
		give []byte
	}{
		{name: "garbage", give: []byte(strings.Repeat("not a bbolt file ", 1000))},
		{name: "empty page", give: make([]byte, 4096)},
		{name: "truncated", give: nil}, // filled below from a real file
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			content := tt.give
			if content == nil {
				o := mustOpen(t, t.TempDir(), 1000)
				mustEnqueue(t, o, 50)
				raw, err := os.ReadFile(o.db.Path())
				if err != nil {
					t.Fatal(err)
				}
				content = raw[:len(raw)/3+100]
			}
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			before := time.Now().UnixMilli()
			o := mustOpen(t, dir, 1000)
			if o.MovedAside() == "" {
				t.Fatal("corrupt file not reported as moved aside")
			}
			if _, err := os.Stat(o.MovedAside()); err != nil {
				t.Fatalf("moved-aside file: %v", err)
			}
			f, err := o.Enqueue(fix(1))
			if err != nil {
				t.Fatal(err)
			}
			if f.Seq <= uint64(before) {
				t.Fatalf("first seq after recovery %d: want above the clock in ms (%d) so it never repeats an old one", f.Seq, before)
			}
		})
	}
}

func TestLockedFileIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, 1000)
	_, err := Open(dir, 1000, nil)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.corrupt-*")); len(m) != 0 {
		t.Fatalf("a locked file was moved aside: %v", m)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	o := mustOpen(b, b.TempDir(), 1<<30)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := o.Enqueue(fix(i % 60)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrain measures peeking and removing batches of 100, as the
// publisher does when a backlog drains.
func BenchmarkDrain(b *testing.B) {
	o := mustOpen(b, b.TempDir(), 1<<30)
	const batch = 100
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if o.Depth() < batch {
			o.db.NoSync = true // filling is not what is measured
			mustEnqueue(b, o, 10*batch)
			o.db.NoSync = false
		}
		b.StartTimer()
		fs, err := o.PeekAfter(0, batch)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Remove(seqs(fs)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch), "fixes/op")
}

func BenchmarkMemoryEnqueue(b *testing.B) {
	m := NewMemory(50000, 0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.Enqueue(fix(i % 60)); err != nil {
			b.Fatal(err)
		}
	}
}
