// Package outbox is the agent's durable buffer of accepted fixes.
//
// A fix is numbered and written to a bbolt file (fsynced) in one
// transaction, before anything tries to send it; it leaves the file only
// when the broker has acknowledged the message that carried it. The
// sequence counter lives in the same file, so numbers stay monotonic across
// restarts and kill -9. The last applied task sequence number is kept there
// too.
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
	keySeq      = []byte("seq")      // last sequence number given
	keyTaskSeq  = []byte("task_seq") // last task message applied
	keyDropped  = []byte("dropped")  // fixes dropped because the outbox was full
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

	mu      sync.Mutex
	max     int
	depth   int
	lastSeq uint64
	dropped uint64
	// MovedAside is the path a corrupt file was renamed to on Open, or "".
	movedAside string
}

// Open opens (or creates) the outbox in dir, keeping at most maxFixes.
// A file that bbolt cannot read, or whose pages fail a consistency check,
// is renamed to outbox.db.corrupt-<UTC time> and a fresh outbox is started;
// the sequence counter of the fresh one starts at the current Unix time in
// milliseconds so that numbers stay above any number used before (a device
// cannot have sent more than one fix per millisecond since 1970).
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
		if moved != "" && o.lastSeq == 0 {
			o.lastSeq = uint64(time.Now().UnixMilli())
			if err := putU64(meta, keySeq, o.lastSeq); err != nil {
				return err
			}
		}
		o.dropped = getU64(meta, keyDropped)
		o.depth = fixes.Stats().KeyN
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox init: %w", err)
	}
	return o, nil
}

// openChecked opens path and checks every page, turning bbolt panics on
// damaged pages into errors.
func openChecked(path string) (db *bolt.DB, err error) {
	if err := preflight(path); err != nil {
		return nil, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			db.Close()
			db, err = nil, fmt.Errorf("outbox check panicked: %v", r)
		}
	}()
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
// dropping the oldest fixes if the outbox is full. It returns f with Seq set.
func (o *Outbox) Enqueue(f wire.Fix) (wire.Fix, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f.Seq = o.lastSeq + 1
	val, err := wire.EncodeBatch(nil, []wire.Fix{f})
	if err != nil {
		return f, fmt.Errorf("outbox encode: %w", err)
	}
	var dropped int
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
		if err := putU64(meta, keySeq, f.Seq); err != nil {
			return err
		}
		return fixes.Put(seqKey(f.Seq), val)
	})
	if err != nil {
		return f, fmt.Errorf("outbox enqueue: %w", err)
	}
	o.lastSeq = f.Seq
	o.depth += 1 - dropped
	o.dropped += uint64(dropped)
	if dropped > 0 {
		o.log.Warn("outbox full: dropped oldest fixes", "dropped", dropped, "max", o.max)
	}
	return f, nil
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
			out = append(out, fs[0])
		}
		return nil
	})
	return out, err
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

// TaskSeq returns the last task sequence number applied.
func (o *Outbox) TaskSeq() (uint64, error) {
	var v uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		v = getU64(tx.Bucket(bucketMeta), keyTaskSeq)
		return nil
	})
	return v, err
}

// SetTaskSeq stores the last task sequence number applied.
func (o *Outbox) SetTaskSeq(seq uint64) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		return putU64(tx.Bucket(bucketMeta), keyTaskSeq, seq)
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
