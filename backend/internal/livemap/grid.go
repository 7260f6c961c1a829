package livemap

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The spatial part of the index is a pure-Go grid over latitude and
// longitude, not H3: finding a point's grid cell is two multiplications,
// neighbours are index arithmetic, and a lower bound of the great-circle
// distance from a query point to a cell has a closed form (see cellLB), so
// Nearest never calls cgo. H3 stays for what the outside sees (density
// hexes, the cell reported per courier).
//
// Cells are 1/gridPerDeg degree on a side (≈ 430 m north-south and 360 m
// east-west at Casablanca's latitude). They are grouped in tiles of
// tileSide × tileSide cells, each with its own lock; the tile table is
// copy-on-write, so finding a tile takes no lock.
const (
	gridPerDeg = 256
	gridRows   = 180 * gridPerDeg
	gridCols   = 360 * gridPerDeg
	tileShift  = 3
	tileSide   = 1 << tileShift
	tileMask   = tileSide - 1
)

// degPerCell is the side of a grid cell in degrees.
const degPerCell = 1.0 / gridPerDeg

// rad is one degree in radians.
const rad = math.Pi / 180

// gridCell returns the row and column of a point; rows count from the south
// pole, columns from the antimeridian eastwards.
func gridCell(lat, lng float64) (row, col int32) {
	r := int32((lat + 90) * gridPerDeg)
	r = min(max(r, 0), gridRows-1)
	c := int32((lng + 180) * gridPerDeg)
	if c >= gridCols {
		c -= gridCols
	}
	return r, max(c, 0)
}

// wrapCol brings a column index into [0, gridCols).
func wrapCol(c int32) int32 {
	c %= gridCols
	if c < 0 {
		c += gridCols
	}
	return c
}

func tileKey(row, col int32) uint64 {
	return uint64(uint32(row>>tileShift))<<32 | uint64(uint32(col>>tileShift))
}

func cellSlot(row, col int32) uint16 { return uint16((row&tileMask)<<tileShift | col&tileMask) }

// entry is the hot part of a courier, inline in its grid cell so that
// Nearest filters and ranks without touching records.
type entry struct {
	v     vec3
	c     *courier
	hash  uint64 // of the courier's id (Filter.Exclude is tested on it first)
	spare int32
	class uint8 // classOf: status, online, on shift
}

// classOf packs what most filters test into 4 bits: a Filter compiles to a
// 16-bit mask of accepted classes, one test per entry.
func classOf(st Status, online, onShift bool) uint8 {
	cl := uint8(st) & 3
	if online {
		cl |= 4
	}
	if onShift {
		cl |= 8
	}
	return cl
}

// tile is tileSide × tileSide grid cells under one lock. Every change of
// an entry holds mu for writing; Nearest reads under mu for reading.
type tile struct {
	mu         sync.RWMutex
	row0, col0 int32        // first row and column
	n          atomic.Int32 // couriers in the tile
	cells      [tileSide * tileSide]cellLists
	// hot is the first storage of each cell's hot list (cellLists[0]): the
	// candidates of a dispatch query sit in one block of the tile, cell
	// after cell, instead of one heap array per cell. A list that outgrows
	// it moves to the heap (append).
	hot [tileSide * tileSide][hotInline]entry
}

// hotInline is how many hot entries a cell keeps inside its tile.
const hotInline = 4

// cellLists are the couriers of one grid cell in two lists: those a
// dispatch query wants (available, connected, on shift: hotClass) and the
// rest, so that the common query scans only its candidates.
type cellLists [2][]entry

// hotClass is the class of an available, connected courier on shift.
const hotClass = 1 | 4 | 8

func listOf(class uint8) uint8 {
	if class == hotClass {
		return 0
	}
	return 1
}

func (l *cellLists) empty() bool { return len(l[0]) == 0 && len(l[1]) == 0 }

// add appends e to its list and returns the list and the position; inline
// is the cell's storage in its tile for the hot list. It keeps the entry
// address hints (courier.ep) of the couriers whose entries it moves.
func (l *cellLists) add(e entry, inline *[hotInline]entry) (list uint8, pos int32) {
	list = listOf(e.class)
	if l[list] == nil {
		if list == 0 {
			l[list] = inline[:0:hotInline]
		} else {
			l[list] = make([]entry, 0, 4)
		}
	}
	old := l[list]
	es := append(old, e)
	l[list] = es
	pos = int32(len(es) - 1)
	if len(old) > 0 && &old[0] != &es[0] { // the list moved
		for i := range es {
			es[i].c.ep.Store(uintptr(unsafe.Pointer(&es[i])))
		}
	} else {
		e.c.ep.Store(uintptr(unsafe.Pointer(&es[pos])))
	}
	return list, pos
}

// remove takes out the entry at pos of list, moving the last one into its
// place (and telling its courier).
func (l *cellLists) remove(list uint8, pos int32) {
	es := l[list]
	last := int32(len(es) - 1)
	if pos != last {
		moved := es[last]
		es[pos] = moved
		moved.c.pos = pos
		moved.c.ep.Store(uintptr(unsafe.Pointer(&es[pos])))
	}
	es[last] = entry{}
	l[list] = es[:last]
}

// grid is the tile table.
type grid struct {
	tiles    atomic.Pointer[map[uint64]*tile] // copy on write, under mu
	mu       sync.Mutex
	occupied atomic.Int64 // non-empty cells
}

func (g *grid) init() {
	m := map[uint64]*tile{}
	g.tiles.Store(&m)
}

func (g *grid) tile(key uint64) *tile { return (*g.tiles.Load())[key] }

// tileFor returns the tile holding (row, col), creating it. Tiles are never
// dropped: the table grows with the area couriers have covered (a tile is
// about 3.5 × 2.9 km and 1.6 kB empty).
func (g *grid) tileFor(row, col int32) *tile {
	key := tileKey(row, col)
	if t := g.tile(key); t != nil {
		return t
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.tiles.Load()
	if t := old[key]; t != nil {
		return t
	}
	m := make(map[uint64]*tile, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	t := &tile{row0: row &^ tileMask, col0: col &^ tileMask}
	m[key] = t
	g.tiles.Store(&m)
	return t
}

// bounds is the query point's side of the distance lower bounds: a point
// on the sphere with its latitude, longitude and cos(latitude).
type bounds struct {
	lat, lng float64 // degrees
	cosLat   float64
}

func newBounds(lat, lng float64) bounds {
	return bounds{lat: lat, lng: lng, cosLat: math.Cos(lat * rad)}
}

// pad makes a bound computed in floating point safe to prune with: the
// exact distances it is compared with are within rounding of the truth.
func pad(m float64) float64 { return m*(1-1e-9) - 1e-3 }

// rowsLB is a lower bound of the distance in metres from the point to any
// point with latitude in rows [r0, r1]: the closest point of a band of
// latitude is on the same meridian.
func (b *bounds) rowsLB(r0, r1 int32) float64 {
	lo := float64(r0)*degPerCell - 90
	hi := float64(r1+1)*degPerCell - 90
	var d float64
	switch {
	case b.lat < lo:
		d = lo - b.lat
	case b.lat > hi:
		d = b.lat - hi
	default:
		return 0
	}
	return pad(d * rad * earthRadiusM)
}

// meridianLB is a lower bound of the distance in metres from the point to
// the great circle of the meridian at longitude edge (degrees), which is
// asin(cos(lat)·|sin δ|) for a difference of longitude δ.
func (b *bounds) meridianLB(edge float64) float64 {
	s := math.Abs(math.Sin((edge - b.lng) * rad))
	// asin(s) ≥ s, and at city distances the two differ by s²/6 (0.1 ppm at 5 km).
	return pad(min(b.cosLat*s, 1) * earthRadiusM)
}

// colsLB is a lower bound of the distance in metres from the point to any
// point with longitude in columns [c0, c1] (unwrapped: c0 may be negative
// or c1 past gridCols). A path from a point outside that lune into it
// crosses one of its two bounding half-meridians, each no nearer than its
// great circle.
func (b *bounds) colsLB(c0, c1 int32) float64 {
	lo := float64(c0)*degPerCell - 180
	hi := float64(c1+1)*degPerCell - 180
	if hi-lo >= 360 {
		return 0
	}
	// Is the point inside? Its longitude east of lo, in [0, 360).
	if math.Mod(b.lng-lo+720, 360) <= hi-lo {
		return 0
	}
	return min(b.meridianLB(lo), b.meridianLB(hi))
}

// cellLB bounds the distance to a block of cells from below.
func (b *bounds) cellLB(r0, r1, c0, c1 int32) float64 {
	return max(b.rowsLB(r0, r1), b.colsLB(c0, c1))
}
