// Package density keeps supply and demand per H3 cell: couriers available and
// busy, open orders, orders booked in the last 15 and 60 minutes and failed
// deliveries in the last 60 minutes, at res 8 (the default map) and res 7
// (the city view).
//
// It is fed events as they happen and never scans couriers or orders:
// courier presence changes (CourierChanged, fed from the live index's
// observer), OrderOpened/OrderClosed, Booked and Failed. Windowed counts
// live in per-cell rings of 60 one-minute buckets, read relative to a now
// given by the caller. It does no I/O and is safe for concurrent use.
//
// Wiring the live index (livemap may not be imported here, nor this package
// there), in the integrator:
//
//	type densityFeed struct{ m *density.Map }
//
//	func (f densityFeed) CourierChanged(id string, prev, next livemap.Presence) {
//		f.m.CourierChanged(id, conv(prev), conv(next))
//	}
//
//	func conv(p livemap.Presence) density.Presence {
//		return density.Presence{Cell8: p.Cell8, Cell7: p.Cell7, Supply: uint8(p.Supply)}
//	}
//
// The Supply values (SupplyNone, SupplyAvailable, SupplyBusy) equal
// livemap's.
package density

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/uber/h3-go/v4"
)

// Resolutions kept.
const (
	Res     = 8 // default density hexes
	CityRes = 7 // city view
)

// Supply values of Presence.Supply, equal to livemap's.
const (
	SupplyNone      uint8 = 0
	SupplyAvailable uint8 = 1
	SupplyBusy      uint8 = 2
)

// Errors returned by Map; callers branch on them with errors.Is.
var (
	ErrResolution = errors.New("density: unsupported resolution")
	ErrCell       = errors.New("density: invalid cell")
)

// Presence is where and how a courier counts: its res-8 and res-7 cells
// (zero when it has no position) and SupplyNone, SupplyAvailable or
// SupplyBusy.
type Presence struct {
	Cell8, Cell7 h3.Cell
	Supply       uint8
}

// BBox is minLng, minLat, maxLng, maxLat in degrees, as in GeoJSON.
type BBox [4]float64

func (b *BBox) contains(lat, lng float64) bool {
	return b == nil || lng >= b[0] && lat >= b[1] && lng <= b[2] && lat <= b[3]
}

// CellStats is the supply and demand of one cell at a moment.
type CellStats struct {
	Cell              string // H3 index
	Lat, Lng          float64
	AvailableCouriers int
	BusyCouriers      int
	OpenOrders        int
	Booked15m         int
	Booked60m         int
	Failed60m         int
	// Boundary is the cell's ring as [lng, lat] pairs, closed (last = first).
	Boundary [][2]float64
}

// window counts events per minute over the last hour.
type window struct {
	minute [60]int64 // unix minute each slot counts
	n      [60]int32
}

func (w *window) add(m int64) {
	i := ((m % 60) + 60) % 60
	switch {
	case w.minute[i] == m:
	case w.minute[i] < m || w.n[i] == 0:
		w.minute[i], w.n[i] = m, 0
	default:
		return // older than the hour the slot now counts
	}
	w.n[i]++
}

// sum counts events in the span minutes up to and including minute now.
func (w *window) sum(now, span int64) int {
	s := 0
	for i := range w.minute {
		if m := w.minute[i]; m <= now && m > now-span {
			s += int(w.n[i])
		}
	}
	return s
}

type cell struct {
	available, busy, open int
	booked, failed        window
	lat, lng              float64
	boundary              [][2]float64
}

func (c *cell) idle(now int64) bool {
	return c.available == 0 && c.busy == 0 && c.open == 0 && c.booked.sum(now, 60) == 0 && c.failed.sum(now, 60) == 0
}

// Map is the supply and demand per cell. The zero value is not usable: call New.
type Map struct {
	mu     sync.RWMutex
	levels map[int]map[h3.Cell]*cell
	orders map[string]h3.Cell // open order -> res-8 pickup cell
}

// New returns an empty Map.
func New() *Map {
	return &Map{
		levels: map[int]map[h3.Cell]*cell{Res: {}, CityRes: {}},
		orders: make(map[string]h3.Cell),
	}
}

// CellOf returns the cell of a point at res.
func CellOf(lat, lng float64, res int) (h3.Cell, error) {
	c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
	if err != nil {
		return 0, fmt.Errorf("%w: %v,%v res %d: %w", ErrCell, lat, lng, res, err)
	}
	return c, nil
}

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

// get returns the counters of c at res, creating them. The caller holds mu.
func (m *Map) get(res int, c h3.Cell) (*cell, error) {
	if x := m.levels[res][c]; x != nil {
		return x, nil
	}
	ll, err := h3.CellToLatLng(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrCell, c, err)
	}
	b, err := h3.CellToBoundary(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrCell, c, err)
	}
	ring := make([][2]float64, 0, len(b)+1)
	for _, p := range b {
		ring = append(ring, [2]float64{p.Lng, p.Lat})
	}
	ring = append(ring, ring[0])
	x := &cell{lat: ll.Lat, lng: ll.Lng, boundary: ring}
	m.levels[res][c] = x
	return x, nil
}

// parents returns the cells at Res and CityRes containing c (of res ≥ Res).
func parents(c h3.Cell) (c8, c7 h3.Cell, err error) {
	if !c.IsValid() || c.Resolution() < Res {
		return 0, 0, fmt.Errorf("%w: %v (need a valid cell of res %d or finer)", ErrCell, c, Res)
	}
	if c8, err = c.Parent(Res); err != nil {
		return 0, 0, fmt.Errorf("%w: %v: %w", ErrCell, c, err)
	}
	if c7, err = c.Parent(CityRes); err != nil {
		return 0, 0, fmt.Errorf("%w: %v: %w", ErrCell, c, err)
	}
	return c8, c7, nil
}

// each applies fn to the counters of c8 and c7.
func (m *Map) each(c8, c7 h3.Cell, fn func(*cell)) error {
	x8, err := m.get(Res, c8)
	if err != nil {
		return err
	}
	x7, err := m.get(CityRes, c7)
	if err != nil {
		return err
	}
	fn(x8)
	fn(x7)
	return nil
}

func supplyDelta(p Presence, d int) func(*cell) {
	return func(c *cell) {
		switch p.Supply {
		case SupplyAvailable:
			c.available += d
		case SupplyBusy:
			c.busy += d
		}
	}
}

// CourierChanged moves one courier's supply from prev to next. Presences
// with a zero cell or SupplyNone count nowhere. It has the shape of
// livemap.Observer's method (see the package comment).
func (m *Map) CourierChanged(_ string, prev, next Presence) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Cells here come from the live index, which computed them from H3: an
	// error can only be a broken invariant, and the counts would rather
	// skip one change than stop the ingest path.
	if prev.Supply != SupplyNone && prev.Cell8 != 0 {
		_ = m.each(prev.Cell8, prev.Cell7, supplyDelta(prev, -1))
	}
	if next.Supply != SupplyNone && next.Cell8 != 0 {
		_ = m.each(next.Cell8, next.Cell7, supplyDelta(next, +1))
	}
}

// OrderOpened counts order id as open at its pickup cell (any valid cell of
// res 8 or finer). Opening an open order again moves it; it is counted once.
func (m *Map) OrderOpened(id string, pickup h3.Cell) error {
	c8, c7, err := parents(pickup)
	if err != nil {
		return fmt.Errorf("order %s opened: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.orders[id]; ok {
		if old == c8 {
			return nil
		}
		m.closeLocked(id, old)
	}
	if err := m.each(c8, c7, func(c *cell) { c.open++ }); err != nil {
		return fmt.Errorf("order %s opened: %w", id, err)
	}
	m.orders[id] = c8
	return nil
}

// OrderClosed stops counting order id as open (delivered, returned,
// cancelled) and reports whether it was open.
func (m *Map) OrderClosed(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	c8, ok := m.orders[id]
	if ok {
		m.closeLocked(id, c8)
	}
	return ok
}

func (m *Map) closeLocked(id string, c8 h3.Cell) {
	delete(m.orders, id)
	dec := func(c *cell) { c.open-- }
	if x := m.levels[Res][c8]; x != nil {
		dec(x)
	}
	if c7, err := c8.Parent(CityRes); err == nil {
		if x := m.levels[CityRes][c7]; x != nil {
			dec(x)
		}
	}
}

// Booked counts an order booked at time t with pickup in cell (res ≥ 8).
func (m *Map) Booked(pickup h3.Cell, t time.Time) error {
	return m.event(pickup, t, func(c *cell, min int64) { c.booked.add(min) })
}

// Failed counts a failed delivery attempt at time t in cell (res ≥ 8).
func (m *Map) Failed(at h3.Cell, t time.Time) error {
	return m.event(at, t, func(c *cell, min int64) { c.failed.add(min) })
}

func (m *Map) event(at h3.Cell, t time.Time, fn func(*cell, int64)) error {
	c8, c7, err := parents(at)
	if err != nil {
		return err
	}
	min := minuteOf(t)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.each(c8, c7, func(c *cell) { fn(c, min) })
}

// Cells returns the non-empty cells at res (Res or CityRes) whose centre
// lies in bbox (nil: everywhere), sorted by cell. Windows end at now's
// minute: an event counts in "last 15 minutes" when its minute is one of
// the 15 up to and including now's; events after now are not counted. An
// unsupported res returns nil.
func (m *Map) Cells(res int, bbox *BBox, now time.Time) []CellStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	level, ok := m.levels[res]
	if !ok {
		return nil
	}
	nm := minuteOf(now)
	out := make([]CellStats, 0, len(level))
	for id, c := range level {
		if !bbox.contains(c.lat, c.lng) {
			continue
		}
		s := c.stats(id, nm)
		if s.AvailableCouriers == 0 && s.BusyCouriers == 0 && s.OpenOrders == 0 && s.Booked60m == 0 && s.Failed60m == 0 {
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b CellStats) int { return cmp.Compare(a.Cell, b.Cell) })
	return out
}

func (c *cell) stats(id h3.Cell, nowMin int64) CellStats {
	return CellStats{
		Cell: id.String(), Lat: c.lat, Lng: c.lng,
		AvailableCouriers: c.available, BusyCouriers: c.busy, OpenOrders: c.open,
		Booked15m: c.booked.sum(nowMin, 15), Booked60m: c.booked.sum(nowMin, 60),
		Failed60m: c.failed.sum(nowMin, 60),
		Boundary:  slices.Clone(c.boundary),
	}
}

// Prune forgets cells with nothing to count at now; call it every few
// minutes so memory follows activity.
func (m *Map) Prune(now time.Time) int {
	nm := minuteOf(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, level := range m.levels {
		for id, c := range level {
			if c.idle(nm) {
				delete(level, id)
				n++
			}
		}
	}
	return n
}

// Stats returns the figures of the res cell containing (lat, lng) at now;
// ok is false when nothing was ever counted there.
func (m *Map) Stats(lat, lng float64, res int, now time.Time) (CellStats, bool) {
	id, err := CellOf(lat, lng, res)
	if err != nil {
		return CellStats{}, false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := m.levels[res][id]
	if c == nil {
		return CellStats{}, false
	}
	return c.stats(id, minuteOf(now)), true
}
