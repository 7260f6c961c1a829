// Package outbox is the agent's durable buffer of accepted fixes.
//
// A fix is numbered and written to a bbolt file (fsynced) in one
// transaction, before anything tries to send it; it leaves the file when
// the backend confirms it stored it (Confirm; or, without storage
// acknowledgements, when the broker acknowledged the message: Remove). The
// sequence counter and its epoch live in the same file, so numbers stay
// monotonic across restarts and kill -9, and a new file (emptied, damaged,
// a new phone) starts a new epoch. The last applied task sequence number is
// kept there too.
//
// The disk never kills the agent: a file bbolt cannot open (even one that
// makes it panic) is moved aside and counted; a full disk drops the oldest
// fixes, and when even that cannot be written, the new fix, counting each
// loss (Lost).
package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tawsil/tawsil/shared/wire"
)

// FileName is the outbox file inside the --outbox directory.
const FileName = "outbox.db"

var (
	bucketFixes = []byte("fixes") // big-endian seq -> one-fix wire.EncodeBatch payload
	bucketMeta  = []byte("meta")
	keySeq      = []byte("seq")        // last sequence number given
	keyTaskSeq  = []byte("task_seq")   // last task message applied
	keyPlan     = []byte("route_plan") // the route plan message in force
	keyDropped  = []byte("dropped")    // fixes dropped because the outbox was full
	keyEpoch    = []byte("epoch")      // sequence epoch of this file
)

// Errors.
var (
	ErrClosed = errors.New("outbox closed")
	ErrLocked = errors.New("outbox file is in use by another process")
)

// Outbox is a bbolt-backed FIFO of fixes. It is safe for concurrent use.
type Outbox struct {
	db  *bolt.DB
	log *slog.Logger

	mu       sync.Mutex
	max      int
	depth    int
	epoch    uint64
	lastSeq  uint64
	dropped  uint64 // over the file's life, persisted
	diskLost uint64 // since Open: fixes lost to a full or failing disk
	damaged  int    // damaged files moved aside in this directory
	// MovedAside is the path a corrupt file was renamed to on Open, or "".
	movedAside string
}

// Open opens (or creates) the outbox in dir, keeping at most maxFixes.
// A file that bbolt cannot read, or whose pages fail a consistency check
// (or make bbolt panic), is renamed to outbox.db.corrupt-<UTC time> and a
// fresh outbox is started, in a new sequence epoch.
func Open(dir string, maxFixes int, log *slog.Logger) (*Outbox, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openChecked(path)
	var moved string
	if err != nil {
		if errors.Is(err, ErrLocked) || errors.Is(err, fs.ErrPermission) {
			return nil, err
		}
		moved = fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000Z"))
		if rerr := os.Rename(path, moved); rerr != nil {
			return nil, fmt.Errorf("outbox %s is corrupt (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		log.Error("outbox file corrupt: moved aside, starting a fresh outbox", "path", path, "moved_to", moved, "err", err)
		if db, err = openChecked(path); err != nil {
			return nil, fmt.Errorf("fresh outbox: %w", err)
		}
	}
	o := &Outbox{db: db, log: log, max: maxFixes, movedAside: moved}
	newEpoch := false
	err = db.Update(func(tx *bolt.Tx) error {
		fixes, err := tx.CreateBucketIfNotExists(bucketFixes)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		o.lastSeq = getU64(meta, keySeq)
		if o.epoch = getU64(meta, keyEpoch); o.epoch == 0 {
			// A new file, or one from before epochs (its counter goes on).
			// Never the epoch of an earlier file in this directory, even
			// one created within the same second.
			o.epoch = max(wire.NewDeviceEpoch(time.Now()), lastEpoch(dir)+1)
			if err := putU64(meta, keyEpoch, o.epoch); err != nil {
				return err
			}
			newEpoch = true
		}
		o.dropped = getU64(meta, keyDropped)
		o.depth = fixes.Stats().KeyN
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox init: %w", err)
	}
	if newEpoch {
		// Best effort: the file's own meta is what counts.
		_ = os.WriteFile(filepath.Join(dir, epochFile), binary.BigEndian.AppendUint64(nil, o.epoch), 0o600)
	}
	if damaged, err := filepath.Glob(path + ".corrupt-*"); err == nil {
		o.damaged = len(damaged)
	}
	return o, nil
}

// epochFile remembers, beside the outbox, the last epoch started there.
const epochFile = "outbox.epoch"

func lastEpoch(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, epochFile))
	if err != nil || len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// openChecked opens path and checks every page, turning bbolt panics on
// damaged pages into errors.
func openChecked(path string) (db *bolt.DB, err error) {
	if err := preflight(path); err != nil {
		return nil, err
	}
	// bbolt can panic inside Open itself (a damaged freelist page: "invalid
	// freelist page"), before there is a DB to close.
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("outbox open panicked: %v", r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return cerr
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// boltMagic opens every bbolt meta page.
const boltMagic = 0xED0CDAED

// ErrTruncated reports an outbox file shorter than its own meta page says.
var ErrTruncated = errors.New("outbox file truncated")

// preflight refuses a file whose meta pages promise more pages than the
// file holds: bbolt would mmap past the end and die of SIGBUS, which no
// recover can catch. A missing or empty file is fine (bbolt creates it).
func preflight(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	// Page header (16 bytes), then the meta: magic, version, page size,
	// flags (4 bytes each), root bucket (16), freelist pgid (8), high-water
	// pgid (8). Meta page 0 is at offset 0, meta page 1 at one page size.
	var buf [64]byte
	if _, err := f.ReadAt(buf[:], 0); err != nil {
		return fmt.Errorf("%w: %d bytes", ErrTruncated, size)
	}
	pageSize := int64(binary.LittleEndian.Uint32(buf[24:]))
	if binary.LittleEndian.Uint32(buf[16:]) != boltMagic || pageSize < 512 || pageSize > 1<<20 {
		return berrors.ErrInvalid
	}
	for _, off := range []int64{0, pageSize} {
		if _, err := f.ReadAt(buf[:], off); err != nil {
			return fmt.Errorf("%w: %d bytes", ErrTruncated, size)
		}
		if binary.LittleEndian.Uint32(buf[16:]) != boltMagic {
			continue // bbolt falls back on the other meta page
		}
		if hw := int64(binary.LittleEndian.Uint64(buf[56:])); hw*pageSize > size || hw < 0 {
			return fmt.Errorf("%w: meta says %d pages of %d bytes, file has %d bytes", ErrTruncated, hw, pageSize, size)
		}
	}
	return nil
}

// MovedAside returns where a corrupt file was moved by Open, or "".
func (o *Outbox) MovedAside() string { return o.movedAside }

// SetMax changes the bound (a new profile); it applies at the next Enqueue.
func (o *Outbox) SetMax(n int) {
	o.mu.Lock()
	o.max = n
	o.mu.Unlock()
}

// Enqueue numbers f with the next sequence number and stores it durably,
// dropping the oldest fixes if the outbox is full. It returns f with Seq
// and Epoch set.
//
// When the disk refuses the write (full, or failing), Enqueue drops the
// oldest fixes to make room and tries again; if that cannot be written
// either, the new fix is lost. Both are counted (Lost) and Enqueue returns
// nil: the agent goes on reading and publishing. The sequence number is
// used either way, so the backend can tell a gap from a duplicate.
func (o *Outbox) Enqueue(f wire.Fix) (wire.Fix, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f.Seq, f.Epoch = o.lastSeq+1, o.epoch
	val, err := wire.EncodeBatch(nil, []wire.Fix{f})
	if err != nil {
		return f, fmt.Errorf("outbox encode: %w", err)
	}
	dropped, err := o.put(f.Seq, val)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return f, err
		}
		// Make room: the oldest eighth (at least 16 fixes), then try again.
		freed, derr := o.dropOldest(max(16, o.depth/8))
		o.diskLost += uint64(freed)
		if derr == nil {
			dropped, err = o.put(f.Seq, val)
		}
		if err != nil {
			o.lastSeq = f.Seq // never reuse the number: the fix may reach no one, but it existed
			o.diskLost++
			o.log.Warn("outbox write failed: fix lost", "seq", f.Seq, "lost_total", o.diskLost+o.dropped, "err", err)
			return f, nil
		}
		o.log.Warn("outbox write failed: dropped oldest fixes to make room", "dropped", freed, "err", err)
	}
	o.lastSeq = f.Seq
	o.depth += 1 - dropped
	o.dropped += uint64(dropped)
	if dropped > 0 {
		o.log.Warn("outbox full: dropped oldest fixes", "dropped", dropped, "max", o.max)
	}
	return f, nil
}

// put writes one fix (and the counter), dropping the oldest over the bound.
func (o *Outbox) put(seq uint64, val []byte) (dropped int, err error) {
	if o.db == nil {
		return 0, ErrClosed
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		fixes, meta := tx.Bucket(bucketFixes), tx.Bucket(bucketMeta)
		c := fixes.Cursor()
		for n := o.depth; n >= o.max && n > 0; n-- {
			if k, _ := c.First(); k != nil {
				if err := c.Delete(); err != nil {
					return err
				}
				dropped++
			}
		}
		if dropped > 0 {
			if err := putU64(meta, keyDropped, o.dropped+uint64(dropped)); err != nil {
				return err
			}
		}
		if err := putU64(meta, keySeq, seq); err != nil {
			return err
		}
		return fixes.Put(seqKey(seq), val)
	})
	if err != nil {
		return 0, fmt.Errorf("outbox enqueue: %w", err)
	}
	return dropped, nil
}

// dropOldest deletes the n oldest fixes in a transaction of deletions only
// (which bbolt can usually commit into pages it already has).
func (o *Outbox) dropOldest(n int) (int, error) {
	deleted := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		deleted = 0
		c := tx.Bucket(bucketFixes).Cursor()
		for k, _ := c.First(); k != nil && deleted < n; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	o.depth -= deleted
	return deleted, nil
}

// PeekAfter returns up to n fixes with Seq > after, oldest first.
func (o *Outbox) PeekAfter(after uint64, n int) ([]wire.Fix, error) {
	var out []wire.Fix
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFixes).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
			fs, err := wire.DecodeBatch(v)
			if err != nil || len(fs) != 1 {
				return fmt.Errorf("outbox record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			fs[0].Epoch = o.epoch // records written before epochs carry none
			out = append(out, fs[0])
		}
		return nil
	})
	return out, err
}

// Epoch is the sequence epoch of this outbox file.
func (o *Outbox) Epoch() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.epoch
}

// Confirm deletes the fixes the backend acknowledged as stored. Ranges of
// another epoch (an older file's) are ignored. It returns how many fixes
// it deleted.
func (o *Outbox) Confirm(epoch uint64, ranges []wire.SeqRange) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if epoch != o.epoch {
		return 0, nil
	}
	removed := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		removed = 0
		c := tx.Bucket(bucketFixes).Cursor()
		for _, r := range ranges {
			for k, _ := c.Seek(seqKey(r.From)); k != nil; k, _ = c.Seek(seqKey(r.From)) {
				s := binary.BigEndian.Uint64(k)
				if s > r.To {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				removed++
				r.From = s + 1
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox confirm: %w", err)
	}
	o.depth -= removed
	return removed, nil
}

// Remove deletes the given fixes (acknowledged by the broker). Unknown
// sequence numbers (already dropped as oldest) are ignored.
func (o *Outbox) Remove(seqs []uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	removed := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFixes)
		for _, s := range seqs {
			k := seqKey(s)
			if b.Get(k) == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox remove: %w", err)
	}
	o.depth -= removed
	return nil
}

// Depth is the number of fixes waiting.
func (o *Outbox) Depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.depth
}

// LastSeq is the last sequence number given.
func (o *Outbox) LastSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSeq
}

// Dropped counts fixes dropped because the outbox was full, over the life
// of the file.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Lost counts every fix lost before the backend could have it: dropped for
// the bound (over the file's life) and lost to a full or failing disk
// (since Open).
func (o *Outbox) Lost() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped + o.diskLost
}

// Damaged counts the damaged outbox files moved aside in this directory.
func (o *Outbox) Damaged() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.damaged
}

// TaskState returns the last task sequence number applied and the route
// plan message in force (nil when none).
func (o *Outbox) TaskState() (seq uint64, plan []byte, err error) {
	err = o.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		seq = getU64(meta, keyTaskSeq)
		if p := meta.Get(keyPlan); p != nil {
			plan = append([]byte(nil), p...) // valid only inside the transaction
		}
		return nil
	})
	return seq, plan, err
}

// SetTaskState stores the last task sequence number applied and, when plan
// is not nil, the route plan message in force, in one transaction.
func (o *Outbox) SetTaskState(seq uint64, plan []byte) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if plan != nil {
			if err := meta.Put(keyPlan, plan); err != nil {
				return err
			}
		}
		return putU64(meta, keyTaskSeq, seq)
	})
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

func seqKey(s uint64) []byte { return binary.BigEndian.AppendUint64(nil, s) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, k []byte, v uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, v))
}
