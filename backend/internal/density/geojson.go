package density

import (
	"encoding/json"
	"fmt"
)

// FeatureCollection is a GeoJSON FeatureCollection of cells (RFC 7946).
type FeatureCollection struct {
	Type     string    `json:"type"` // "FeatureCollection"
	Features []Feature `json:"features"`
}

// Feature is one cell as a GeoJSON Polygon feature.
type Feature struct {
	Type       string     `json:"type"` // "Feature"
	Geometry   Polygon    `json:"geometry"`
	Properties Properties `json:"properties"`
}

// Polygon is a GeoJSON Polygon: one closed ring of [lng, lat].
type Polygon struct {
	Type        string         `json:"type"` // "Polygon"
	Coordinates [][][2]float64 `json:"coordinates"`
}

// Properties are a cell's figures, named as the HTTP API documents them.
type Properties struct {
	Cell              string `json:"cell"`
	AvailableCouriers int    `json:"available_couriers"`
	BusyCouriers      int    `json:"busy_couriers"`
	OpenOrders        int    `json:"open_orders"`
	Booked15m         int    `json:"booked_15m"`
	Booked60m         int    `json:"booked_60m"`
	Failed60m         int    `json:"failed_60m"`
}

// Features turns cells into a FeatureCollection ready for json.Marshal.
func Features(cells []CellStats) FeatureCollection {
	fc := FeatureCollection{Type: "FeatureCollection", Features: make([]Feature, 0, len(cells))}
	for _, c := range cells {
		fc.Features = append(fc.Features, Feature{
			Type:     "Feature",
			Geometry: Polygon{Type: "Polygon", Coordinates: [][][2]float64{c.Boundary}},
			Properties: Properties{
				Cell: c.Cell, AvailableCouriers: c.AvailableCouriers, BusyCouriers: c.BusyCouriers,
				OpenOrders: c.OpenOrders, Booked15m: c.Booked15m, Booked60m: c.Booked60m, Failed60m: c.Failed60m,
			},
		})
	}
	return fc
}

// GeoJSON encodes cells as a GeoJSON FeatureCollection.
func GeoJSON(cells []CellStats) ([]byte, error) {
	b, err := json.Marshal(Features(cells))
	if err != nil {
		return nil, fmt.Errorf("density geojson: %w", err)
	}
	return b, nil
}
