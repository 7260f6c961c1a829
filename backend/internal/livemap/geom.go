package livemap

import (
	"math"
	"sync"

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

// DistanceM is geo.DistanceLatLngM: the distance Nearest ranks by and
// reports, bit for bit.
func DistanceM(lat1, lng1, lat2, lng2 float64) float64 {
	return geo.DistanceLatLngM(lat1, lng1, lat2, lng2)
}

// containMargin is how far inside every edge (as the sine of an angle, about
// 6 cm on Earth) a point must be for the fast containment test to accept it
// without asking H3. It absorbs floating-point disagreement between the
// boundary H3 reports and the cell H3 assigns; points in the margin take the
// exact slow path.
const containMargin = 1e-8

// cellGeom is what the index caches about one res-9 cell.
type cellGeom struct {
	center vec3
	// radiusM bounds the distance from center to any point of the cell
	// (largest centre-vertex distance, padded).
	radiusM float64
	// normals of the edge great circles, pointing inwards; valid only when
	// convex is true (a plain hexagon inside one icosahedron face).
	normals [6]vec3
	convex  bool
}

// contains reports whether v is certainly inside the cell. False means "ask
// H3", not "outside".
func (g *cellGeom) contains(v vec3) bool {
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
	g := &cellGeom{center: vecOf(ll.Lat, ll.Lng)}
	verts := make([]vec3, len(b))
	for i, p := range b {
		verts[i] = vecOf(p.Lat, p.Lng)
		if d := distM(g.center, verts[i]); d > g.radiusM {
			g.radiusM = d
		}
	}
	// Pad: edges are great-circle arcs, and a small convex spherical polygon
	// lies within its farthest vertex distance; the padding covers rounding.
	g.radiusM = g.radiusM*1.001 + 0.5
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

// lowerBoundM is a distance in metres that no point of the cell is nearer
// to p than. It takes the better of two bounds: centre distance minus the
// circumradius, and (for plain hexagons) the distance to the farthest edge
// great circle p is outside of, since the cell lies inside every edge's
// hemisphere; that one uses the sine of the angle, never more than the angle.
func (g *cellGeom) lowerBoundM(p vec3) float64 {
	lb := distM(p, g.center) - g.radiusM
	if g.convex {
		out := 0.0
		for i := range g.normals {
			out = max(out, -g.normals[i].dot(p))
		}
		lb = max(lb, out*earthRadiusM*(1-1e-9)-0.01)
	}
	return lb
}
