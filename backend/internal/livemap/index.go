package livemap

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/shared/wire"
)

// Locking. Courier records are owned by an id shard (by hash of the id);
// the spatial buckets by a cell shard (by hash of the res-9 cell). Every
// mutation of a record holds its id shard's write lock and, while the record
// sits in a bucket, that bucket's cell shard write lock. So a reader may read
// a record under either lock: Get and Snapshot under the id shard, Nearest
// under the cell shard. Lock order: id shard, then at most one cell shard at
// a time.
const (
	numShards     = 64
	geomCacheSize = 1 << 18
)

// courier is the record of one courier.
type courier struct {
	id       string
	fix      wire.Fix
	lastSeen time.Time
	cell9    h3.Cell
	cell8    h3.Cell
	cell7    h3.Cell
	geom     *cellGeom // geometry of cell9
	bkt      *bucket   // bucket of cell9 while hasFix
	v        vec3      // unit vector of fix
	vehicle  string
	load     int32
	capacity int32
	pos      int32 // index in bkt.entries
	status   Status
	hasFix   bool
	online   bool
	onShift  bool
}

// entry is the hot part of a courier, inline in its bucket so that Nearest
// filters and ranks without touching records.
type entry struct {
	v      vec3
	c      *courier
	spare  int32
	status Status
	flags  uint8
}

const (
	flagOnline uint8 = 1 << iota
	flagOnShift
)

type bucket struct {
	cell    h3.Cell
	shard   *cellShard
	geom    *cellGeom
	entries []entry
}

type idShard struct {
	mu   sync.RWMutex
	byID map[string]*courier
}

type cellShard struct {
	mu    sync.RWMutex
	cells map[h3.Cell]*bucket
}

// Index is the live courier index. The zero value is not usable: call New.
type Index struct {
	ids      [numShards]idShard
	cells    [numShards]cellShard
	geoms    *geomCache
	obs      Observer
	occupied atomic.Int64 // non-empty res-9 cells
	count    atomic.Int64 // couriers
	// ringCost is how many occupied cells a full scan may visit for the
	// price of one ring cell before Nearest prefers the full scan.
	ringCost int64
}

// Option configures an Index.
type Option func(*Index)

// WithObserver makes the index report Presence changes to o.
func WithObserver(o Observer) Option { return func(x *Index) { x.obs = o } }

// New returns an empty index.
func New(opts ...Option) *Index {
	x := &Index{geoms: newGeomCache(geomCacheSize), ringCost: 10}
	for i := range x.ids {
		x.ids[i].byID = make(map[string]*courier)
		x.cells[i].cells = make(map[h3.Cell]*bucket)
	}
	for _, o := range opts {
		o(x)
	}
	return x
}

func (x *Index) idShard(id string) *idShard {
	// FNV-1a, inline to stay allocation free.
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return &x.ids[h%numShards]
}

func (x *Index) cellShard(c h3.Cell) *cellShard {
	return &x.cells[(uint64(c)*0x9E3779B97F4A7C15)>>58]
}

func (c *courier) entry() entry {
	e := entry{v: c.v, c: c, spare: c.capacity - c.load, status: c.status}
	if c.online {
		e.flags |= flagOnline
	}
	if c.onShift {
		e.flags |= flagOnShift
	}
	return e
}

func (c *courier) presence() Presence {
	if !c.hasFix {
		return Presence{}
	}
	p := Presence{Cell8: c.cell8, Cell7: c.cell7}
	switch {
	case c.online && c.onShift && c.status == StatusAvailable:
		p.Supply = SupplyAvailable
	case c.online && c.status == StatusBusy:
		p.Supply = SupplyBusy
	}
	return p
}

func (c *courier) snapshot() Courier {
	return Courier{
		ID: c.id, Fix: c.fix, HasFix: c.hasFix,
		Cell9: c.cell9, Cell8: c.cell8, Cell7: c.cell7,
		Status: c.status, Load: int(c.load), Capacity: int(c.capacity),
		Vehicle: c.vehicle, OnShift: c.onShift, Online: c.online, LastSeen: c.lastSeen,
	}
}

// mutate runs fn on c with c's bucket locked (if any) and refreshes c's
// bucket entry. The caller holds c's id shard write lock.
func (c *courier) mutate(fn func(*courier)) {
	b := c.bkt
	if b == nil {
		fn(c)
		return
	}
	b.shard.mu.Lock()
	fn(c)
	b.entries[c.pos] = c.entry()
	b.shard.mu.Unlock()
}

// insert puts c into the bucket of c.cell9. The caller holds c's id shard
// write lock and c is in no bucket.
func (x *Index) insert(c *courier) {
	s := x.cellShard(c.cell9)
	s.mu.Lock()
	b := s.cells[c.cell9]
	if b == nil {
		b = &bucket{cell: c.cell9, shard: s, geom: c.geom, entries: make([]entry, 0, 4)}
		s.cells[c.cell9] = b
		x.occupied.Add(1)
	}
	c.bkt = b
	c.pos = int32(len(b.entries))
	b.entries = append(b.entries, c.entry())
	s.mu.Unlock()
}

// detach takes c out of its bucket. The caller holds c's id shard write lock.
func (x *Index) detach(c *courier) {
	b := c.bkt
	if b == nil {
		return
	}
	s := b.shard
	s.mu.Lock()
	last := len(b.entries) - 1
	if int(c.pos) != last {
		moved := b.entries[last]
		b.entries[c.pos] = moved
		moved.c.pos = c.pos
	}
	b.entries[last] = entry{}
	b.entries = b.entries[:last]
	if last == 0 {
		delete(s.cells, b.cell)
		x.occupied.Add(-1)
	}
	c.bkt = nil
	s.mu.Unlock()
}

// locate computes the cells of a position.
func (x *Index) locate(lat, lng float64) (c9, c8, c7 h3.Cell, g *cellGeom, err error) {
	c9, err = h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("cell of %v,%v: %w", lat, lng, err)
	}
	if c8, err = c9.Parent(DensityRes); err != nil {
		return 0, 0, 0, nil, fmt.Errorf("parent of %v: %w", c9, err)
	}
	if c7, err = c9.Parent(CityRes); err != nil {
		return 0, 0, 0, nil, fmt.Errorf("parent of %v: %w", c9, err)
	}
	if g, err = x.geoms.get(c9); err != nil {
		return 0, 0, 0, nil, fmt.Errorf("geometry of %v: %w", c9, err)
	}
	return c9, c8, c7, g, nil
}

// lookup returns the record of id, creating it (with no position, online,
// status available, off shift) if absent. The caller holds s.mu for writing.
func (x *Index) lookup(s *idShard, id string) (c *courier, created bool) {
	if c = s.byID[id]; c != nil {
		return c, false
	}
	c = &courier{id: strings.Clone(id), status: StatusAvailable, capacity: 1}
	s.byID[c.id] = c
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
func Newer(f, live wire.Fix) bool {
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
	var res UpdateResult
	if err := wire.CheckFix(f); err != nil {
		return res, fmt.Errorf("%w: courier %s seq %d: %w", ErrInvalidFix, id, f.Seq, err)
	}
	v := vecOf(f.Lat, f.Lng)
	s := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, created := x.lookup(s, id)
	res.Created = created
	if c.hasFix && !Newer(f, c.fix) {
		res.OutOfOrder = true
		if recv.After(c.lastSeen) {
			c.mutate(func(c *courier) { c.lastSeen = recv })
		}
		return res, nil
	}
	prev := c.presence()
	res.Applied = true
	apply := func(c *courier) {
		c.fix, c.v, c.online = f, v, true
		if recv.After(c.lastSeen) {
			c.lastSeen = recv
		}
	}
	if c.hasFix && c.geom.contains(v) {
		c.mutate(apply) // fast path: still in the same res-9 cell
		x.notify(id, prev, c.presence())
		return res, nil
	}
	c9, c8, c7, g, err := x.locate(f.Lat, f.Lng)
	if err != nil {
		res.Applied = false
		return res, fmt.Errorf("%w: courier %s seq %d: %w", ErrInvalidFix, id, f.Seq, err)
	}
	if c.hasFix && c9 == c.cell9 {
		c.mutate(apply) // inside the margin of the fast test
		x.notify(id, prev, c.presence())
		return res, nil
	}
	res.CellChanged = true
	x.detach(c)
	apply(c)
	c.cell9, c.cell8, c.cell7, c.geom, c.hasFix = c9, c8, c7, g, true
	x.insert(c)
	x.notify(id, prev, c.presence())
	return res, nil
}

// set upserts courier id and applies fn to it.
func (x *Index) set(id string, fn func(*courier)) {
	s := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := x.lookup(s, id)
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
	vehicle = strings.Clone(vehicle)
	x.set(id, func(c *courier) { c.vehicle, c.capacity = vehicle, int32(capacity) })
	return nil
}

// Get returns a snapshot of courier id.
func (x *Index) Get(id string) (Courier, bool) {
	s := x.idShard(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.byID[id]
	if c == nil {
		return Courier{}, false
	}
	return c.snapshot(), true
}

// Remove forgets courier id and reports whether it was known.
func (x *Index) Remove(id string) bool {
	s := x.idShard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byID[id]
	if c == nil {
		return false
	}
	prev := c.presence()
	x.detach(c)
	delete(s.byID, id)
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
		for id, c := range s.byID {
			if !c.online || !c.lastSeen.Before(cutoff) {
				continue
			}
			prev := c.presence()
			c.mutate(func(c *courier) { c.online = false })
			x.notify(id, prev, c.presence())
			out = append(out, id)
		}
		s.mu.Unlock()
	}
	return out
}

// Each calls fn with a snapshot of every courier, in no order, until fn
// returns false. fn must not call the index.
func (x *Index) Each(fn func(Courier) bool) {
	for i := range x.ids {
		s := &x.ids[i]
		s.mu.RLock()
		for _, c := range s.byID {
			if !fn(c.snapshot()) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
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
	var (
		c9, c8, c7 h3.Cell
		g          *cellGeom
	)
	if in.HasFix {
		if err := wire.CheckFix(in.Fix); err != nil {
			return fmt.Errorf("%w: restore courier %s: %w", ErrInvalidFix, in.ID, err)
		}
		var err error
		if c9, c8, c7, g, err = x.locate(in.Fix.Lat, in.Fix.Lng); err != nil {
			return fmt.Errorf("%w: restore courier %s: %w", ErrInvalidFix, in.ID, err)
		}
	}
	s := x.idShard(in.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := x.lookup(s, in.ID)
	prev := c.presence()
	x.detach(c)
	c.fix, c.hasFix, c.v = in.Fix, in.HasFix, vecOf(in.Fix.Lat, in.Fix.Lng)
	c.cell9, c.cell8, c.cell7, c.geom = c9, c8, c7, g
	c.status, c.load, c.capacity = in.Status, int32(in.Load), int32(in.Capacity)
	c.vehicle, c.onShift, c.online, c.lastSeen = strings.Clone(in.Vehicle), in.OnShift, in.Online, in.LastSeen
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
