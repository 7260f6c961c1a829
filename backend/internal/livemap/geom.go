package livemap

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/backend/internal/geo"
)

// earthRadiusM is the one Earth radius (package geo); H3's own differs by
// 0.3 ppm.
const earthRadiusM = geo.EarthRadiusM

// vec3 is a point on the unit sphere (earth-centred, earth-fixed direction).
type vec3 struct{ x, y, z float64 }

func vecOf(lat, lng float64) vec3 {
	v := geo.VecOf(lat, lng)
	return vec3{v.X, v.Y, v.Z}
}

func (a vec3) dot(b vec3) float64 { return a.x*b.x + a.y*b.y + a.z*b.z }

func (a vec3) cross(b vec3) vec3 {
	return vec3{a.y*b.z - a.z*b.y, a.z*b.x - a.x*b.z, a.x*b.y - a.y*b.x}
}

func (a vec3) norm() float64 { return math.Sqrt(a.dot(a)) }

// distM is geo's great-circle distance between two unit vectors.
func distM(a, b vec3) float64 {
	return geo.VecDistanceM(geo.Vec{X: a.x, Y: a.y, Z: a.z}, geo.Vec{X: b.x, Y: b.y, Z: b.z})
}

// containMargin is how far inside every edge (as the sine of an angle, about
// 6 cm on Earth) a point must be for the fast containment test to accept it
// without asking H3. It absorbs floating-point disagreement between the
// boundary H3 reports and the cell H3 assigns; points in the margin take the
// exact slow path.
const containMargin = 1e-8

// cellGeom is what the index caches about one res-9 cell: enough to follow
// a courier from cell to cell without calling H3 (cgo) on every fix.
type cellGeom struct {
	cell   h3.Cell
	center vec3
	// in2 is the squared chord from the centre of a circle inside the cell
	// with a margin (0 when not convex): a point within it is inside
	// without the edge tests. The circle covers ~90 % of a hexagon, and the
	// fields it needs share the object's first cache line.
	in2 float64
	// convex: a plain hexagon inside one icosahedron face; only then are
	// in2 and normals valid.
	convex         bool
	parent8, city7 h3.Cell // parents at DensityRes and CityRes
	// normals of the edge great circles, pointing inwards.
	normals [6]vec3
	// nbrs holds the geometry of the adjacent cells, filled on first need.
	nbrs atomic.Pointer[[]*cellGeom]
	_    [40]byte // to 256 bytes: objects of that size class are cache-line aligned
}

// inMargin is how far (radians, ~64 cm on Earth) inside the inscribed
// circle a point must be for the circle test: far above the rounding of
// a squared chord.
const inMargin = 1e-7

// contains reports whether v is certainly inside the cell. False means "ask
// H3", not "outside".
func (g *cellGeom) contains(v vec3) bool {
	// in2 is 0 unless convex: the circle test needs only the first line.
	if dx, dy, dz := v.x-g.center.x, v.y-g.center.y, v.z-g.center.z; dx*dx+dy*dy+dz*dz < g.in2 {
		return true
	}
	if !g.convex {
		return false
	}
	for i := range g.normals {
		if g.normals[i].dot(v) <= containMargin {
			return false
		}
	}
	return true
}

func newCellGeom(c h3.Cell) (*cellGeom, error) {
	ll, err := h3.CellToLatLng(c)
	if err != nil {
		return nil, err
	}
	b, err := h3.CellToBoundary(c)
	if err != nil {
		return nil, err
	}
	g := &cellGeom{cell: c, center: vecOf(ll.Lat, ll.Lng)}
	if g.parent8, err = c.Parent(DensityRes); err != nil {
		return nil, err
	}
	if g.city7, err = c.Parent(CityRes); err != nil {
		return nil, err
	}
	verts := make([]vec3, len(b))
	for i, p := range b {
		verts[i] = vecOf(p.Lat, p.Lng)
	}
	if len(verts) == 6 && !c.IsPentagon() {
		g.convex = true
		for i := range verts {
			n := verts[i].cross(verts[(i+1)%6])
			l := n.norm()
			n = vec3{n.x / l, n.y / l, n.z / l}
			if n.dot(g.center) < 0 {
				n = vec3{-n.x, -n.y, -n.z}
			}
			g.normals[i] = n
		}
		// The centre's distance to the nearest edge circle: asin(n·c).
		rIn := math.Pi
		for _, n := range g.normals {
			rIn = min(rIn, math.Asin(min(n.dot(g.center), 1)))
		}
		if r := rIn - inMargin; r > 0 {
			ch := 2 * math.Sin(r/2)
			g.in2 = ch * ch
		}
	}
	return g, nil
}

// neighbours returns the geometry of the cells adjacent to g (computed once).
func (gc *geomCache) neighbours(g *cellGeom) []*cellGeom {
	if n := g.nbrs.Load(); n != nil {
		return *n
	}
	disk, err := h3.GridDisk(g.cell, 1)
	out := make([]*cellGeom, 0, 6)
	if err == nil {
		for _, c := range disk {
			if c == 0 || c == g.cell {
				continue
			}
			if ng, err := gc.get(c); err == nil {
				out = append(out, ng)
			}
		}
	}
	g.nbrs.Store(&out)
	return out
}

// step returns the res-9 cell holding v, given cur, the cell of the previous
// position (or nil): cur itself or one of its neighbours when the fast
// containment test is sure, H3 otherwise. A courier a few metres from its
// last fix costs a few dot products and no cgo call.
func (gc *geomCache) step(cur *cellGeom, v vec3, lat, lng float64) (*cellGeom, error) {
	if cur != nil {
		if cur.contains(v) {
			return cur, nil
		}
		for _, n := range gc.neighbours(cur) {
			if n.contains(v) {
				return n, nil
			}
		}
	}
	c9, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, DispatchRes)
	if err != nil {
		return nil, fmt.Errorf("cell of %v,%v: %w", lat, lng, err)
	}
	if cur != nil && cur.cell == c9 {
		return cur, nil
	}
	g, err := gc.get(c9)
	if err != nil {
		return nil, fmt.Errorf("geometry of %v: %w", c9, err)
	}
	return g, nil
}

// geomCache memoises cell geometry. It is bounded: past maxCells it starts
// afresh (entries are pure functions of the cell, so forgetting is safe).
type geomCache struct {
	mu       sync.RWMutex
	m        map[h3.Cell]*cellGeom
	maxCells int
}

func newGeomCache(maxCells int) *geomCache {
	return &geomCache{m: make(map[h3.Cell]*cellGeom), maxCells: maxCells}
}

func (gc *geomCache) get(c h3.Cell) (*cellGeom, error) {
	gc.mu.RLock()
	g := gc.m[c]
	gc.mu.RUnlock()
	if g != nil {
		return g, nil
	}
	g, err := newCellGeom(c)
	if err != nil {
		return nil, err
	}
	gc.mu.Lock()
	if len(gc.m) >= gc.maxCells {
		gc.m = make(map[h3.Cell]*cellGeom)
	}
	gc.m[c] = g
	gc.mu.Unlock()
	return g, nil
}
