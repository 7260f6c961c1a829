package app

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/httpapi"
	"github.com/tawsil/tawsil/backend/web"
)

// basemapJSON tells the console what to draw under its layers: "none" (a
// plain background, the cities' outlines and H3 cells; nothing is fetched),
// "tiles" (a raster tile URL template) or "pmtiles" (a local archive the
// backend serves under /tiles/).
type basemapJSON struct {
	Kind        string `json:"kind"`
	URL         string `json:"url,omitempty"`
	Attribution string `json:"attribution,omitempty"`
	MaxZoom     int    `json:"max_zoom,omitempty"`
	TileType    string `json:"tile_type,omitempty"`
}

type cityJSON struct {
	Name    string         `json:"name"`
	Outline [][][2]float64 `json:"outline"` // rings of [lng, lat]
}

// mountWeb serves the console, the courier app and the tracking page.
func (m *Main) mountWeb() error {
	cfg := m.Config
	bm := basemapJSON{Kind: "none"}
	w := httpapi.Web{Assets: web.Assets()}
	switch {
	case cfg.BasemapPMTiles != "":
		tiles, info, err := pmtilesHandler(cfg.BasemapPMTiles, m.Log)
		if err != nil {
			return fmt.Errorf("TAWSIL_BASEMAP_PMTILES: %w", err)
		}
		if info.tileType == "mvt" {
			return fmt.Errorf("TAWSIL_BASEMAP_PMTILES: %s holds vector tiles; the console (Leaflet, no WebGL) draws raster archives (PNG, JPEG, WebP)", cfg.BasemapPMTiles)
		}
		w.Tiles = tiles
		bm = basemapJSON{Kind: "pmtiles", URL: info.url, MaxZoom: info.maxZoom, TileType: info.tileType, Attribution: cfg.BasemapAttribution}
	case cfg.BasemapURL != "":
		u, err := url.Parse(cfg.BasemapURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			!strings.Contains(cfg.BasemapURL, "{z}") || !strings.Contains(cfg.BasemapURL, "{x}") || !strings.Contains(cfg.BasemapURL, "{y}") {
			return fmt.Errorf("TAWSIL_BASEMAP_URL must be an http(s) tile URL template with {z}, {x} and {y}")
		}
		w.ImgOrigins = []string{u.Scheme + "://" + strings.ReplaceAll(u.Host, "{s}", "*")}
		bm = basemapJSON{Kind: "tiles", URL: cfg.BasemapURL, Attribution: cfg.BasemapAttribution, MaxZoom: 19}
	}
	var cities []cityJSON
	for _, c := range area.Default().Cities {
		cities = append(cities, cityJSON{Name: c.Name, Outline: c.Polygon})
	}
	raw, err := json.Marshal(map[string]any{"basemap": bm, "cities": cities, "center": [2]float64{33.5731, -7.5898}, "zoom": 12})
	if err != nil {
		return err
	}
	w.Config = raw
	return m.HTTP.MountWeb(w)
}
