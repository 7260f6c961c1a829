// Package area knows where Tawsil delivers: each city is a polygon turned
// into a set of H3 cells, and a point is served when its cell is in a set.
//
// Cells are chosen by H3's polygon fill, which keeps the cells whose centre
// lies inside the polygon: a point within about half a cell (≈ 0.5 km at
// resolution 8) of a border may fall either way. Borders are drawn with
// that in mind (coast vertices a little out to sea).
package area

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/uber/h3-go/v4"
)

// Errors.
var (
	// ErrOutside: the point is not in any service area.
	ErrOutside = errors.New("outside the service area")
	// ErrInvalidPoint: the coordinates are not a point on Earth.
	ErrInvalidPoint = errors.New("invalid point")
	// ErrConfig: the area configuration is malformed.
	ErrConfig = errors.New("invalid area config")
)

// Config lists the served cities. Polygons are GeoJSON-style: rings of
// [lng, lat] pairs, the first ring the outline, others holes.
type Config struct {
	Resolution int    `json:"resolution" yaml:"resolution"`
	Cities     []City `json:"cities" yaml:"cities"`
}

// City is one service area.
type City struct {
	Name    string         `json:"name" yaml:"name"`
	Note    string         `json:"note,omitempty" yaml:"note,omitempty"`
	Polygon [][][2]float64 `json:"polygon" yaml:"polygon"`
}

//go:embed default.json
var defaultJSON []byte

// Default returns the built-in areas: the urban areas of Casablanca, Rabat
// (with Salé and Témara) and Tanger, at resolution 8.
func Default() Config {
	var c Config
	if err := json.Unmarshal(defaultJSON, &c); err != nil {
		panic(fmt.Sprintf("area: embedded default.json: %v", err)) // a build defect, caught by tests
	}
	return c
}

// Validate checks the configuration's shape.
func (c Config) Validate() error {
	if c.Resolution < 0 || c.Resolution > 12 {
		return fmt.Errorf("%w: resolution %d (want 0..12)", ErrConfig, c.Resolution)
	}
	if len(c.Cities) == 0 {
		return fmt.Errorf("%w: no city", ErrConfig)
	}
	seen := map[string]bool{}
	for _, city := range c.Cities {
		name := strings.TrimSpace(city.Name)
		switch {
		case name == "":
			return fmt.Errorf("%w: city without a name", ErrConfig)
		case seen[name]:
			return fmt.Errorf("%w: city %q twice", ErrConfig, name)
		case len(city.Polygon) == 0:
			return fmt.Errorf("%w: city %q has no polygon", ErrConfig, name)
		}
		seen[name] = true
		for i, ring := range city.Polygon {
			if len(ring) < 4 {
				return fmt.Errorf("%w: city %q ring %d has %d points (want >= 4, closed)", ErrConfig, name, i, len(ring))
			}
			for _, p := range ring {
				if !valid(p[1], p[0]) {
					return fmt.Errorf("%w: city %q ring %d point [%v, %v] (lng, lat)", ErrConfig, name, i, p[0], p[1])
				}
			}
		}
	}
	return nil
}

// Areas answers "which city serves this point?". It is immutable after New
// and safe for concurrent use.
type Areas struct {
	res    int
	cells  map[h3.Cell]string
	counts map[string]int
	names  []string
}

// New fills each city's polygon with H3 cells at the configured resolution.
// Overlapping cities are refused.
func New(cfg Config) (*Areas, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Areas{res: cfg.Resolution, cells: map[h3.Cell]string{}, counts: map[string]int{}}
	for _, city := range cfg.Cities {
		cells, err := h3.PolygonToCells(toGeoPolygon(city.Polygon), cfg.Resolution)
		if err != nil {
			return nil, fmt.Errorf("%w: city %q: fill: %v", ErrConfig, city.Name, err)
		}
		if len(cells) == 0 {
			return nil, fmt.Errorf("%w: city %q covers no cell at resolution %d", ErrConfig, city.Name, cfg.Resolution)
		}
		for _, c := range cells {
			if other, dup := a.cells[c]; dup {
				return nil, fmt.Errorf("%w: cities %q and %q overlap at cell %s", ErrConfig, other, city.Name, c)
			}
			a.cells[c] = city.Name
		}
		a.counts[city.Name] = len(cells)
		a.names = append(a.names, city.Name)
	}
	return a, nil
}

func toGeoPolygon(rings [][][2]float64) h3.GeoPolygon {
	loop := func(r [][2]float64) h3.GeoLoop {
		if len(r) > 1 && r[0] == r[len(r)-1] {
			r = r[:len(r)-1] // H3 loops are implicitly closed
		}
		l := make(h3.GeoLoop, len(r))
		for i, p := range r {
			l[i] = h3.NewLatLng(p[1], p[0])
		}
		return l
	}
	g := h3.GeoPolygon{GeoLoop: loop(rings[0])}
	for _, h := range rings[1:] {
		g.Holes = append(g.Holes, loop(h))
	}
	return g
}

func valid(lat, lng float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lng) && lat >= -90 && lat <= 90 && lng >= -180 && lng <= 180
}

// Locate returns the city serving a point.
func (a *Areas) Locate(lat, lng float64) (city string, ok bool) {
	if !valid(lat, lng) {
		return "", false
	}
	c, err := h3.LatLngToCell(h3.NewLatLng(lat, lng), a.res)
	if err != nil {
		return "", false
	}
	city, ok = a.cells[c]
	return city, ok
}

// Check is Locate with an error for refusals: ErrInvalidPoint or
// ErrOutside, naming the point (safe to show to the merchant).
func (a *Areas) Check(lat, lng float64) (string, error) {
	if !valid(lat, lng) || (lat == 0 && lng == 0) {
		return "", fmt.Errorf("point (%v, %v): %w", lat, lng, ErrInvalidPoint)
	}
	city, ok := a.Locate(lat, lng)
	if !ok {
		return "", fmt.Errorf("point (%.5f, %.5f) is not served (cities: %s): %w", lat, lng, strings.Join(a.names, ", "), ErrOutside)
	}
	return city, nil
}

// Cities returns the city names in configuration order.
func (a *Areas) Cities() []string { return slices.Clone(a.names) }

// CellCount returns how many cells cover a city (0 for an unknown city).
func (a *Areas) CellCount(city string) int { return a.counts[city] }

// Resolution returns the H3 resolution of the cell sets.
func (a *Areas) Resolution() int { return a.res }
