package livemap

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/shared/wire"
)

// Locking. Courier records are owned by an id shard (by hash of the id);
// their grid entries by the grid tile they sit in. Every mutation of a
// record holds its id shard's write lock and, while the record sits in the
// grid, its tile's write lock. So a reader may read a record under either
// lock: Get and Snapshot under the id shard, Nearest under the tile. Lock
// order: id shard, then at most one tile at a time.
const (
	numShards     = 64
	geomCacheSize = 1 << 18
)

// courier is the record of one courier: 256 bytes, so that records are
// cache-line aligned (Go's 256-byte size class), laid out in the order an
// Update reads and writes them. Line 0 holds the id and every address the
// update goes on to (tile, grid entry, res-9 cell), so that the id map's
// key comparison, which needs that line anyway, is the last miss before
// all the others can be asked for at once (see prefetch); then the fix
// (lines 1-2), the unit vector (line 2), last seen and where the entry
// sits (line 3). The grid cell is not kept: it is gridCell of the fix. A
// short id lives inside the record. TestCourierRecordLayout holds the
// size and the lines.
type courier struct {
	id string
	// ep is the address of the courier's grid entry while it has one, kept
	// by cellLists.add and remove: a hint for prefetch only, never
	// dereferenced (it may be stale; a uintptr keeps nothing alive).
	ep       atomic.Uintptr
	idBuf    [24]byte  // id's bytes when it fits (a 24-hex ObjectID does)
	t        *tile     // grid tile while hasFix
	geom     *cellGeom // res-9 cell of fix (nil without a fix)
	fix      wire.Fix
	v        vec3    // unit vector of fix
	c9       h3.Cell // geom's cell, here for snapshots (0 without a fix)
	status   Status
	online   bool
	onShift  bool
	load     int32
	capacity int32
	lastSeen time.Time
	pos      int32  // index in t.cells[slot][list], under t.mu
	slot     uint16 // cell within t
	list     uint8  // listOf(class), under t.mu
	hasFix   bool
	vehicle  string
	hash     uint64 // of id
}

// newCourier returns a fresh record for id: available, off shift, capacity 1.
func newCourier(id string) *courier {
	c := &courier{status: StatusAvailable, capacity: 1}
	if len(id) <= len(c.idBuf) && len(id) > 0 {
		n := copy(c.idBuf[:], id)
		c.id = unsafe.String(&c.idBuf[0], n)
	} else {
		c.id = strings.Clone(id)
	}
	return c
}

// cells returns the H3 cells of the live fix (zero without one), from the
// record alone (the parents by bit arithmetic, see h3Parent).
func (c *courier) cells() (c9, c8, c7 h3.Cell) {
	if c.c9 == 0 {
		return 0, 0, 0
	}
	return c.c9, h3Parent(c.c9, DensityRes), h3Parent(c.c9, CityRes)
}

// setGeom sets the res-9 cell of the live fix (nil: none).
func (c *courier) setGeom(g *cellGeom) {
	c.geom = g
	if g == nil {
		c.c9 = 0
	} else {
		c.c9 = g.cell
	}
}

// h3Parent is the parent of cell c at resolution res ≤ c's, without cgo:
// an H3 index holds its resolution in bits 52-55 and one 3-bit digit per
// resolution below bit 45; a parent has its resolution there and 7 in
// every digit past it (H3's cellToParent). TestH3ParentAgreesWithH3.
func h3Parent(c h3.Cell, res int) h3.Cell {
	const resShift = 52
	u := uint64(c)&^(0xf<<resShift) | uint64(res)<<resShift
	return h3.Cell(u | (1<<(3*(15-res)) - 1))
}

// idShard maps ids to records: an open-addressing table of (hash of the
// id, record), probed linearly from the hash. A lookup reads one slot (16
// bytes, usually the one cache line of the table it touches) and the
// record, whose first line holds the id to compare. Ids whose hashes are
// equal simply take two slots.
type idShard struct {
	mu    sync.Mutex
	slots []idSlot // a power of two long, or nil; c == nil marks a free slot
	n     int      // records
}

type idSlot struct {
	h uint64
	c *courier
}

// home is where hash h starts probing (the low bits chose the shard).
func (s *idShard) home(h uint64) int { return int(h>>8) & (len(s.slots) - 1) }

func (s *idShard) get(h uint64, id string) *courier {
	if s.n == 0 {
		return nil
	}
	mask := len(s.slots) - 1
	for i := s.home(h); ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.c == nil {
			return nil
		}
		if sl.h == h {
			// The rest of the record is asked for with line 0, which
			// the comparison reads: an update needs all four.
			p := uintptr(unsafe.Pointer(sl.c))
			prefetch4(p+64, p+128, p+192, 0)
			if sl.c.id == id {
				return sl.c
			}
		}
	}
}

func (s *idShard) put(h uint64, c *courier) {
	c.hash = h
	if (s.n+1)*5 > len(s.slots)*4 { // at most 80 % full
		s.grow()
	}
	s.insert(idSlot{h, c})
	s.n++
}

func (s *idShard) insert(sl idSlot) {
	mask := len(s.slots) - 1
	i := s.home(sl.h)
	for s.slots[i].c != nil {
		i = (i + 1) & mask
	}
	s.slots[i] = sl
}

func (s *idShard) grow() {
	old := s.slots
	s.slots = make([]idSlot, max(16, 2*len(old)))
	for _, sl := range old {
		if sl.c != nil {
			s.insert(sl)
		}
	}
}

// del removes c, shifting back the slots after it that would no longer be
// reachable from their home (no tombstones).
func (s *idShard) del(c *courier) {
	mask := len(s.slots) - 1
	i := s.home(c.hash)
	for s.slots[i].c != c {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; s.slots[j].c != nil; j = (j + 1) & mask {
		// Move slot j into the hole at i unless its home lies cyclically in (i, j].
		if k := s.home(s.slots[j].h); (j-k)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = idSlot{}
	s.n--
}

// each calls fn on every record of the shard until fn returns false. fn
// must not add or remove records.
func (s *idShard) each(fn func(*courier) bool) bool {
	for _, sl := range s.slots {
		if sl.c != nil && !fn(sl.c) {
			return false
		}
	}
	return true
}

// Index is the live courier index. The zero value is not usable: call New.
type Index struct {
	ids   [numShards]idShard
	seed  maphash.Seed
	grid  grid
	geoms *geomCache
	obs   Observer
	count atomic.Int64 // couriers
	// ringCost is how many occupied cells a full scan may visit for the
	// price of one ring cell before Nearest prefers the full scan.
	ringCost int64
	vehicles interner
}

// interner keeps one copy of each vehicle kind: a fleet has a handful
// (bicycle, scooter, car…), and a copy per courier made every answer that
// reports the kind read one more cold line per courier. Past
// maxVehicleKinds distinct kinds (not a fleet's vocabulary) a kind is
// simply copied.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

const maxVehicleKinds = 64

// of returns s's kept copy (made on first sight).
func (in *interner) of(s string) string {
	if s == "" {
		return ""
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if in.m == nil {
		in.m = map[string]string{}
	}
	if len(in.m) < maxVehicleKinds {
		in.m[v] = v
	}
	return v
}

// Option configures an Index.
type Option func(*Index)

// WithObserver makes the index report Presence changes to o.
func WithObserver(o Observer) Option { return func(x *Index) { x.obs = o } }

// New returns an empty index.
func New(opts ...Option) *Index {
	x := &Index{geoms: newGeomCache(geomCacheSize), ringCost: 1, seed: maphash.MakeSeed()}
	x.grid.init()
	for _, o := range opts {
		o(x)
	}
	return x
}

func (x *Index) idShard(id string) (*idShard, uint64) {
	h := maphash.String(x.seed, id)
	return &x.ids[h%numShards], h
}

func (c *courier) entry() entry {
	return entry{v: c.v, c: c, hash: c.hash, spare: c.capacity - c.load, class: classOf(c.status, c.online, c.onShift)}
}

func (c *courier) presence() Presence {
	if !c.hasFix {
		return Presence{}
	}
	_, c8, c7 := c.cells()
	p := Presence{Cell8: c8, Cell7: c7}
	switch {
	case c.online && c.onShift && c.status == StatusAvailable:
		p.Supply = SupplyAvailable
	case c.online && c.status == StatusBusy:
		p.Supply = SupplyBusy
	}
	return p
}

func (c *courier) snapshot() Courier {
	c9, c8, c7 := c.cells()
	return Courier{
		ID: c.id, Fix: c.fix, HasFix: c.hasFix,
		Cell9: c9, Cell8: c8, Cell7: c7,
		Status: c.status, Load: int(c.load), Capacity: int(c.capacity),
		Vehicle: c.vehicle, OnShift: c.onShift, Online: c.online, LastSeen: c.lastSeen,
	}
}

// mutate runs fn on c with c's tile locked (if any) and refreshes c's
// grid entry. The caller holds c's id shard write lock.
func (c *courier) mutate(fn func(*courier)) {
	t := c.t
	if t == nil {
		fn(c)
		return
	}
	t.mu.Lock()
	fn(c)
	e := c.entry()
	l := &t.cells[c.slot]
	if listOf(e.class) == c.list {
		l[c.list][c.pos] = e
	} else {
		l.remove(c.list, c.pos)
		c.list, c.pos = l.add(e, &t.hot[c.slot])
	}
	t.mu.Unlock()
}

// insert puts c into the grid cell of its fix. The caller holds c's id
// shard write lock and c is in no cell.
func (x *Index) insert(c *courier) {
	row, col := gridCell(c.fix.Lat, c.fix.Lng)
	t := x.grid.tileFor(row, col)
	c.slot = cellSlot(row, col)
	t.mu.Lock()
	l := &t.cells[c.slot]
	if l.empty() {
		x.grid.occupied.Add(1)
	}
	c.t = t
	c.list, c.pos = l.add(c.entry(), &t.hot[c.slot])
	t.n.Add(1)
	t.mu.Unlock()
}

// detach takes c out of the grid. The caller holds c's id shard write lock.
func (x *Index) detach(c *courier) {
	t := c.t
	if t == nil {
		return
	}
	t.mu.Lock()
	l := &t.cells[c.slot]
	l.remove(c.list, c.pos)
	if l.empty() {
		x.grid.occupied.Add(-1)
	}
	t.n.Add(-1)
	c.t = nil
	t.mu.Unlock()
}

// locate computes the cells of a position.
func (x *Index) locate(lat, lng float64) (c9, c8, c7 h3.Cell, g *cellGeom, err error) {
	if g, err = x.geoms.step(nil, vecOf(lat, lng), lat, lng); err != nil {
		return 0, 0, 0, nil, err
	}
	return g.cell, g.parent8, g.city7, g, nil
}

// lookup returns the record of id, creating it (with no position, online,
// status available, off shift) if absent. The caller holds s.mu for writing.
func (x *Index) lookup(s *idShard, h uint64, id string) (c *courier, created bool) {
	if c = s.get(h, id); c != nil {
		return c, false
	}
	c = newCourier(id)
	s.put(h, c)
	x.count.Add(1)
	return c, true
}

// notify reports a Presence change. The caller holds the id shard lock, which
// keeps notifications of one courier in order.
func (x *Index) notify(id string, prev, next Presence) {
	if x.obs != nil && prev != next {
		x.obs.CourierChanged(id, prev, next)
	}
}

// Newer reports whether fix f is newer than the live fix: within one
// sequence epoch its sequence number must be above and its device time not
// before; across epochs (a new outbox, another phone, OwnTracks beside the
// agent) sequence numbers are not comparable and device time decides.
func Newer(f, live wire.Fix) bool { return newer(&f, &live) }

// newer is Newer without copying the fixes (Update's hot path).
func newer(f, live *wire.Fix) bool {
	if f.Epoch == live.Epoch {
		return f.Seq > live.Seq && !f.Time.Before(live.Time)
	}
	return f.Time.After(live.Time)
}

// Update applies a fix of courier id received by the server at recv. A fix
// that is not Newer than the live fix is reported OutOfOrder and leaves the live position alone; it still counts as
// a sign of life (LastSeen). An applied fix marks the courier online: the
// device just spoke. A courier seen for the first time is created available,
// off shift, with capacity 1. It returns ErrInvalidFix for fixes that fail
// wire.CheckFix.
func (x *Index) Update(id string, f wire.Fix, recv time.Time) (UpdateResult, error) {
	if err := wire.CheckFix(f); err != nil {
		return UpdateResult{}, invalidFix(id, f, err)
	}
	s, h := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, created := x.lookup(s, h, id)
	c.prefetch()
	return x.update(c, created, &f, recv, nil)
}

// release unlocks the tile held in *hold, if any (see update).
func release(hold **tile) {
	if hold != nil && *hold != nil {
		(*hold).mu.Unlock()
		*hold = nil
	}
}

// prefetch asks for the lines an update of c needs beyond c's record
// (whose lines idShard.get asked for), at once rather than one miss after
// the other: the tile's lock, the grid entry, the cell geometry. Their
// addresses are all on line 0, which the id comparison has just read.
func (c *courier) prefetch() {
	prefetch4(uintptr(unsafe.Pointer(c.t)), c.ep.Load(), uintptr(unsafe.Pointer(c.geom)), 0)
}

func invalidFix(id string, f wire.Fix, err error) error {
	return fmt.Errorf("%w: courier %s seq %d: %w", ErrInvalidFix, id, f.Seq, err)
}

// update is Update of a checked fix f to courier c (just created when
// created). The caller holds c's id shard write lock. With hold not nil
// (UpdateBatch), the common case leaves its tile write-locked in *hold for
// the next moves (one courier's message of fixes, or couriers side by
// side), and every other case first releases a tile held there: at most
// one tile is locked at a time, and never across a notification.
func (x *Index) update(c *courier, created bool, f *wire.Fix, recv time.Time, hold **tile) (UpdateResult, error) {
	res := UpdateResult{Created: created}
	if c.hasFix && !newer(f, &c.fix) {
		res.OutOfOrder = true
		release(hold)
		if recv.After(c.lastSeen) {
			c.mutate(func(c *courier) { c.lastSeen = recv })
		}
		return res, nil
	}
	v := vecOf(f.Lat, f.Lng)
	var cur *cellGeom
	if c.hasFix {
		cur = c.geom
	}
	g, err := x.geoms.step(cur, v, f.Lat, f.Lng)
	if err != nil {
		return res, invalidFix(c.id, *f, err)
	}
	res.Applied = true
	res.CellChanged = !c.hasFix || g.cell != c.geom.cell
	row, col := gridCell(f.Lat, f.Lng)
	sameCell := false
	if c.hasFix {
		r0, c0 := gridCell(c.fix.Lat, c.fix.Lng)
		sameCell = row == r0 && col == c0
	}
	if g == cur && c.online && sameCell {
		// The common case: a connected courier a few metres on, in the
		// same grid and res-9 cells. Only the position changes in the
		// entry, and the presence stays (same cells, same supply).
		t := c.t
		if hold == nil {
			t.mu.Lock()
		} else if *hold != t {
			release(hold)
			t.mu.Lock()
			*hold = t
		}
		c.fix, c.v = *f, v
		if recv.After(c.lastSeen) {
			c.lastSeen = recv
		}
		t.cells[c.slot][c.list][c.pos].v = v
		if hold == nil {
			t.mu.Unlock()
		}
		return res, nil
	}
	release(hold)
	prev := c.presence()
	fix := *f
	apply := func(c *courier) {
		c.fix, c.v, c.online = fix, v, true
		c.setGeom(g)
		if recv.After(c.lastSeen) {
			c.lastSeen = recv
		}
	}
	if sameCell {
		c.mutate(apply) // fast path: still in the same grid cell
	} else {
		x.detach(c)
		apply(c)
		c.hasFix = true
		x.insert(c)
	}
	x.notify(c.id, prev, c.presence())
	return res, nil
}

// Move is one fix of one courier, for UpdateBatch.
type Move struct {
	ID  string
	Fix wire.Fix
}

// MoveResult is what UpdateBatch did with one Move: what Update would have
// returned for it.
type MoveResult struct {
	UpdateResult
	Err error // ErrInvalidFix: the fix changed nothing
}

// batchChunk is how many moves UpdateBatch takes at once: enough misses in
// flight to hide most of the memory latency, few enough id shards held.
const batchChunk = 32

// UpdateBatch applies moves in order, as many calls of Update with the same
// recv would, and writes each one's result into dst's storage (dst's
// contents are discarded; with capacity len(moves) it allocates nothing on
// success). Moves may name the same courier several times (one device's
// batch of fixes) or many couriers (fixes drained from several messages):
// either way the results, the index afterwards and the Observer's
// notifications equal those of the calls one by one. Moves are taken in
// chunks of batchChunk, each under the write locks of the id shards it
// touches (so the Observer is called holding those), with at most one grid
// tile locked at a time.
//
// It is faster per fix than Update because it overlaps the memory misses
// of the couriers of a chunk: with the chunk's id shards held, a first
// pass asks for the id table slots of all its couriers, the next for their
// records, the next for their tiles, grid entries and cells, and only then
// are the moves applied, on lines already in cache. One courier's run of
// moves is looked up once and takes its tile's lock once.
func (x *Index) UpdateBatch(dst []MoveResult, moves []Move, recv time.Time) []MoveResult {
	dst = slices.Grow(dst[:0], len(moves))[:len(moves)]
	for i := 0; i < len(moves); i += batchChunk {
		j := min(i+batchChunk, len(moves))
		x.updateChunk(dst[i:j], moves[i:j], recv)
	}
	return dst
}

// updateChunk is UpdateBatch of at most batchChunk moves.
func (x *Index) updateChunk(res []MoveResult, moves []Move, recv time.Time) {
	var hs [batchChunk]uint64
	var cs [batchChunk]*courier
	var valid uint64 // bit i: moves[i] passed CheckFix
	var heads uint64 // bit i: valid, and not of the courier of the valid move before
	var held uint64  // bit i: id shard i is locked
	prev := -1
	for i := range moves {
		res[i] = MoveResult{}
		if err := wire.CheckFix(moves[i].Fix); err != nil {
			res[i].Err = invalidFix(moves[i].ID, moves[i].Fix, err)
			continue
		}
		valid |= 1 << i
		if prev >= 0 && moves[i].ID == moves[prev].ID { // one device's message: one lookup
			hs[i] = hs[prev]
		} else {
			hs[i] = maphash.String(x.seed, moves[i].ID)
			heads |= 1 << i
			held |= 1 << (hs[i] % numShards)
		}
		prev = i
	}
	// Ascending shard order: two batches (or a batch and the one-shard
	// methods) cannot deadlock.
	for m := held; m != 0; m &= m - 1 {
		x.ids[bits.TrailingZeros64(m)].mu.Lock()
	}
	// Each pass asks for independent lines of every courier; the CPU
	// fetches them in parallel.
	for m := heads; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if s := &x.ids[hs[i]%numShards]; s.n > 0 {
			prefetch(uintptr(unsafe.Pointer(&s.slots[s.home(hs[i])])))
		}
	}
	for m := heads; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if s := &x.ids[hs[i]%numShards]; s.n > 0 {
			if c := s.slots[s.home(hs[i])].c; c != nil { // most likely id's record
				p := uintptr(unsafe.Pointer(c))
				prefetch4(p, p+64, p+128, p+192)
			}
		}
	}
	for m := heads; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if c := x.ids[hs[i]%numShards].get(hs[i], moves[i].ID); c != nil {
			cs[i] = c
			c.prefetch()
		}
	}
	var hold *tile
	var c *courier
	for m := valid; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		created := false
		if heads&(1<<i) != 0 {
			if c = cs[i]; c == nil { // new, or created by an earlier move of the chunk
				c, created = x.lookup(&x.ids[hs[i]%numShards], hs[i], moves[i].ID)
			}
		}
		res[i].UpdateResult, res[i].Err = x.update(c, created, &moves[i].Fix, recv, &hold)
	}
	release(&hold)
	for m := held; m != 0; m &= m - 1 {
		x.ids[bits.TrailingZeros64(m)].mu.Unlock()
	}
}

// set upserts courier id and applies fn to it.
func (x *Index) set(id string, fn func(*courier)) {
	s, h := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := x.lookup(s, h, id)
	prev := c.presence()
	c.mutate(fn)
	x.notify(id, prev, c.presence())
}

// SetOnline records the device's connection state (state topic, Last Will).
// Going online at time at also counts as a sign of life.
func (x *Index) SetOnline(id string, online bool, at time.Time) {
	x.set(id, func(c *courier) {
		c.online = online
		if online && at.After(c.lastSeen) {
			c.lastSeen = at
		}
	})
}

// SetStatus sets the work status and the number of orders carried. It
// returns ErrInvalid for an unknown status or a negative load.
func (x *Index) SetStatus(id string, st Status, load int) error {
	if st >= numStatuses || load < 0 || load > 1<<20 {
		return fmt.Errorf("%w: courier %s status %d load %d", ErrInvalid, id, st, load)
	}
	x.set(id, func(c *courier) { c.status, c.load = st, int32(load) })
	return nil
}

// SetShift records whether the courier is on shift.
func (x *Index) SetShift(id string, onShift bool) {
	x.set(id, func(c *courier) { c.onShift = onShift })
}

// SetProfile sets the vehicle kind and the capacity (most orders at once).
// It returns ErrInvalid for a negative capacity.
func (x *Index) SetProfile(id, vehicle string, capacity int) error {
	if capacity < 0 || capacity > 1<<20 {
		return fmt.Errorf("%w: courier %s capacity %d", ErrInvalid, id, capacity)
	}
	vehicle = x.vehicles.of(vehicle)
	x.set(id, func(c *courier) { c.vehicle, c.capacity = vehicle, int32(capacity) })
	return nil
}

// Get returns a snapshot of courier id.
func (x *Index) Get(id string) (Courier, bool) {
	s, h := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(h, id)
	if c == nil {
		return Courier{}, false
	}
	return c.snapshot(), true
}

// Remove forgets courier id and reports whether it was known.
func (x *Index) Remove(id string) bool {
	s, h := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(h, id)
	if c == nil {
		return false
	}
	prev := c.presence()
	x.detach(c)
	s.del(c)
	x.count.Add(-1)
	x.notify(id, prev, Presence{})
	return true
}

// Len returns the number of couriers.
func (x *Index) Len() int { return int(x.count.Load()) }

// Expire marks offline every online courier not seen since now-staleAfter
// and returns their ids.
func (x *Index) Expire(now time.Time, staleAfter time.Duration) []string {
	cutoff := now.Add(-staleAfter)
	var out []string
	for i := range x.ids {
		s := &x.ids[i]
		s.mu.Lock()
		s.each(func(c *courier) bool {
			if !c.online || !c.lastSeen.Before(cutoff) {
				return true
			}
			prev := c.presence()
			c.mutate(func(c *courier) { c.online = false })
			x.notify(c.id, prev, c.presence())
			out = append(out, c.id)
			return true
		})
		s.mu.Unlock()
	}
	return out
}

// Each calls fn with a snapshot of every courier, in no order, until fn
// returns false. fn must not call the index.
func (x *Index) Each(fn func(Courier) bool) {
	for i := range x.ids {
		s := &x.ids[i]
		s.mu.Lock()
		more := s.each(func(c *courier) bool { return fn(c.snapshot()) })
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// Snapshot returns every courier, for persisting courier_state.
func (x *Index) Snapshot() []Courier {
	out := make([]Courier, 0, x.Len())
	x.Each(func(c Courier) bool {
		out = append(out, c)
		return true
	})
	return out
}

// Restore loads couriers saved by Snapshot, replacing any with the same id.
// Cells are recomputed from the fixes rather than trusted. Couriers that
// fail validation are skipped; the error joins their reasons.
func (x *Index) Restore(cs []Courier) error {
	var errs []error
	for _, in := range cs {
		if err := x.restore(in); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

func (x *Index) restore(in Courier) error {
	if in.ID == "" || in.Status >= numStatuses || in.Load < 0 || in.Capacity < 0 {
		return fmt.Errorf("%w: restore courier %q", ErrInvalid, in.ID)
	}
	var g *cellGeom
	if in.HasFix {
		if err := wire.CheckFix(in.Fix); err != nil {
			return fmt.Errorf("%w: restore courier %s: %w", ErrInvalidFix, in.ID, err)
		}
		var err error
		if _, _, _, g, err = x.locate(in.Fix.Lat, in.Fix.Lng); err != nil {
			return fmt.Errorf("%w: restore courier %s: %w", ErrInvalidFix, in.ID, err)
		}
	}
	s, h := x.idShard(in.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := x.lookup(s, h, in.ID)
	prev := c.presence()
	x.detach(c)
	c.fix, c.hasFix, c.v = in.Fix, in.HasFix, vecOf(in.Fix.Lat, in.Fix.Lng)
	c.setGeom(g)
	c.status, c.load, c.capacity = in.Status, int32(in.Load), int32(in.Capacity)
	c.vehicle, c.onShift, c.online, c.lastSeen = x.vehicles.of(in.Vehicle), in.OnShift, in.Online, in.LastSeen
	if c.hasFix {
		x.insert(c)
	}
	x.notify(in.ID, prev, c.presence())
	return nil
}

func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("livemap: restore: %d couriers skipped: %w", len(errs), errors.Join(errs...))
}
