package outbox

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
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
	Epoch() uint64
	Confirm(epoch uint64, ranges []wire.SeqRange) (int, error)
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
	if err := o.SetTaskState(40, []byte(`{"plan":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := o.SetTaskState(41, nil); err != nil { // a task other than a plan: the plan stays
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
	if ts, plan, err := o.TaskState(); err != nil || ts != 41 || string(plan) != `{"plan":1}` {
		t.Fatalf("task seq %d, plan %q, %v; want 41 and the stored plan", ts, plan, err)
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
			oldEpoch := lastEpoch(dir)
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
			if f.Seq != 1 || f.Epoch < wire.MinDeviceEpoch || f.Epoch == oldEpoch {
				t.Fatalf("first fix after recovery: epoch %d seq %d; want a new epoch (not %d), seq 1", f.Epoch, f.Seq, oldEpoch)
			}
			if o.Damaged() != 1 {
				t.Fatalf("damaged = %d, want 1", o.Damaged())
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

func TestConfirm(t *testing.T) {
	for name, s := range map[string]store{"bbolt": mustOpen(t, t.TempDir(), 1000), "memory": NewMemory(1000, 0)} {
		t.Run(name, func(t *testing.T) {
			mustEnqueue(t, s, 30)
			fs, err := s.PeekAfter(0, 1)
			if err != nil || fs[0].Epoch != s.Epoch() || s.Epoch() < wire.MinDeviceEpoch {
				t.Fatalf("peeked %+v (%v), epoch %d", fs, err, s.Epoch())
			}
			if n, _ := s.Confirm(s.Epoch()+1, []wire.SeqRange{{From: 1, To: 30}}); n != 0 {
				t.Fatalf("another epoch's ack removed %d fixes", n)
			}
			n, err := s.Confirm(s.Epoch(), []wire.SeqRange{{From: 1, To: 10}, {From: 12, To: 12}, {From: 20, To: 40}})
			if err != nil || n != 22 || s.Depth() != 8 {
				t.Fatalf("confirmed %d (%v), depth %d; want 22, 8", n, err, s.Depth())
			}
			left, _ := s.PeekAfter(0, 100)
			if got := seqs(left); len(got) != 8 || got[0] != 11 || got[1] != 13 || got[7] != 19 {
				t.Fatalf("left %v", got)
			}
		})
	}
}

// TestDamagedFreelist (issue 11): random bytes over pages 2-7 made bbolt
// panic inside bolt.Open ("invalid freelist page"), before any recover:
// the agent died at every start. Now the file is moved aside and counted,
// and the fresh outbox starts a new epoch, even within the same second.
func TestDamagedFreelist(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, o, 200)
	oldEpoch := o.Epoch()
	path := o.db.Path()
	o.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := 4096
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 2 * page; i < min(8*page, len(raw)); i++ {
		raw[i] = byte(rnd.Uint32())
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // and again: no crash loop
		o := mustOpen(t, dir, 1000)
		if i == 0 && o.MovedAside() == "" {
			t.Fatal("damaged file not moved aside")
		}
		f, err := o.Enqueue(fix(1))
		if err != nil {
			t.Fatal(err)
		}
		if f.Epoch == oldEpoch {
			t.Fatalf("fresh outbox reuses epoch %d", oldEpoch)
		}
		if o.Damaged() != 1 {
			t.Fatalf("damaged = %d, want 1", o.Damaged())
		}
		o.Close()
	}
}

// mustTinyFS mounts a tmpfs of size bytes (needs root); elsewhere the test
// is skipped, except in CI where it fails.
func mustTinyFS(tb testing.TB, size string) string {
	tb.Helper()
	dir := tb.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("mount a %s tmpfs: %v %s", size, err, out)
		}
		tb.Skipf("cannot mount a %s tmpfs (needs root): %v %s", size, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestFullDisk (issue 11): on a 64 KiB filesystem "no space left on
// device" made Enqueue fail and the agent exit. Now the oldest fixes are
// dropped and counted, the newest are kept, and Enqueue never fails.
func TestFullDisk(t *testing.T) {
	dir := mustTinyFS(t, "64k")
	o := mustOpen(t, dir, 1_000_000)
	const n = 3000
	for i := 0; i < n; i++ {
		if _, err := o.Enqueue(fix(i % 60)); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	if o.Lost() == 0 {
		t.Fatal("a 64 KiB disk held 3000 fixes: the test does not fill it")
	}
	if got := uint64(o.Depth()) + o.Lost(); got != n {
		t.Fatalf("depth %d + lost %d = %d, want %d", o.Depth(), o.Lost(), got, n)
	}
	fs, err := o.PeekAfter(n-1, 10)
	if err != nil || len(fs) != 1 {
		t.Fatalf("newest fix not kept: %v %v", fs, err)
	}
	t.Logf("64 KiB: %d fixes kept, %d lost", o.Depth(), o.Lost())
	// Confirming frees room: what comes next is stored again.
	if _, err := o.Confirm(o.Epoch(), []wire.SeqRange{{From: 1, To: n}}); err != nil {
		t.Fatal(err)
	}
	lost := o.Lost()
	mustEnqueue(t, o, 50)
	if o.Lost() != lost || o.Depth() != 50 {
		t.Fatalf("after confirming: depth %d lost %d (was %d)", o.Depth(), o.Lost(), lost)
	}
}
