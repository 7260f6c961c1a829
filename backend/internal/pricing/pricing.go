// Package pricing is Tawsil's delivery tariff: a quote in Moroccan dirhams
// (MAD) from distance, parcel size, cash on delivery and local supply.
//
// Amounts are computed in centimes (integers) so a breakdown adds up to
// its total exactly; the total is rounded up to the configured step
// (0.5 MAD by default) and the rounding is a breakdown line of its own.
package pricing

import (
	"errors"
	"fmt"
	"math"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// Errors.
var (
	// ErrInput: a quote request is out of range.
	ErrInput = errors.New("invalid quote input")
	// ErrConfig: the tariff is malformed.
	ErrConfig = errors.New("invalid tariff")
)

// SizeRule prices one parcel size: the distance price is multiplied by
// Multiplier, then SurchargeMAD is added.
type SizeRule struct {
	Multiplier   float64 `json:"multiplier" yaml:"multiplier"`
	SurchargeMAD float64 `json:"surcharge_mad" yaml:"surcharge_mad"`
}

// UnderSupply is added when the density layer reports the pick-up cell
// under-supplied (more demand than couriers): a percentage of the subtotal
// and/or a fixed amount.
type UnderSupply struct {
	Percent  float64 `json:"percent" yaml:"percent"`
	FixedMAD float64 `json:"fixed_mad" yaml:"fixed_mad"`
}

// Tariff is the price configuration.
type Tariff struct {
	BaseMAD     float64                 `json:"base_mad" yaml:"base_mad"`
	PerKmMAD    float64                 `json:"per_km_mad" yaml:"per_km_mad"`
	Sizes       map[order.Size]SizeRule `json:"sizes" yaml:"sizes"`
	CODFeeMAD   float64                 `json:"cod_fee_mad" yaml:"cod_fee_mad"`
	UnderSupply UnderSupply             `json:"under_supply" yaml:"under_supply"`
	MinimumMAD  float64                 `json:"minimum_mad" yaml:"minimum_mad"`
	RoundToMAD  float64                 `json:"round_to_mad" yaml:"round_to_mad"` // total rounded up to a multiple
	MaxKm       float64                 `json:"max_km" yaml:"max_km"`             // longer trips are refused
}

// Default returns the launch tariff for one-hour city delivery.
func Default() Tariff {
	return Tariff{
		BaseMAD:  12,
		PerKmMAD: 2.5,
		Sizes: map[order.Size]SizeRule{
			order.SizeS: {Multiplier: 1},
			order.SizeM: {Multiplier: 1.15},
			order.SizeL: {Multiplier: 1.4, SurchargeMAD: 5},
		},
		CODFeeMAD:   3,
		UnderSupply: UnderSupply{Percent: 20},
		MinimumMAD:  15,
		RoundToMAD:  0.5,
		MaxKm:       40,
	}
}

// Validate reports the first malformed value.
func (t Tariff) Validate() error {
	for name, v := range map[string]float64{
		"base_mad": t.BaseMAD, "per_km_mad": t.PerKmMAD, "cod_fee_mad": t.CODFeeMAD,
		"under_supply.percent": t.UnderSupply.Percent, "under_supply.fixed_mad": t.UnderSupply.FixedMAD,
		"minimum_mad": t.MinimumMAD,
	} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s = %v", ErrConfig, name, v)
		}
	}
	if !(t.RoundToMAD >= 0.01) || !(t.MaxKm > 0) {
		return fmt.Errorf("%w: round_to_mad %v, max_km %v", ErrConfig, t.RoundToMAD, t.MaxKm)
	}
	for _, s := range []order.Size{order.SizeS, order.SizeM, order.SizeL} {
		r, ok := t.Sizes[s]
		if !ok {
			return fmt.Errorf("%w: no rule for size %s", ErrConfig, s)
		}
		if !(r.Multiplier > 0) || math.IsInf(r.Multiplier, 0) || math.IsNaN(r.SurchargeMAD) || r.SurchargeMAD < 0 {
			return fmt.Errorf("%w: size %s rule %+v", ErrConfig, s, r)
		}
	}
	return nil
}

// Line codes in a breakdown.
const (
	LineBase        = "base"
	LineDistance    = "distance"
	LineSize        = "size"
	LineCOD         = "cod_fee"
	LineUnderSupply = "under_supply"
	LineMinimum     = "minimum"
	LineRounding    = "rounding"
)

// Line is one part of a price.
type Line struct {
	Code string  `json:"code"`
	MAD  float64 `json:"mad"`
}

// Price is a quote; its lines add up to TotalMAD.
type Price struct {
	TotalMAD  float64 `json:"total_mad"`
	Breakdown []Line  `json:"breakdown"`
}

// Pricer quotes with one tariff; it is immutable and safe for concurrent use.
type Pricer struct{ t Tariff }

// New returns a Pricer for a valid tariff.
func New(t Tariff) (*Pricer, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Pricer{t: t}, nil
}

// Quote prices a delivery over distanceKm (road or detour-corrected
// distance, pick-up to drop-off). Errors: ErrInput for a negative,
// non-finite or too long distance, or an unknown size.
func (p *Pricer) Quote(distanceKm float64, size order.Size, cod, underSupplied bool) (Price, error) {
	t := p.t
	if math.IsNaN(distanceKm) || math.IsInf(distanceKm, 0) || distanceKm < 0 || distanceKm > t.MaxKm {
		return Price{}, fmt.Errorf("%w: distance %v km (max %v)", ErrInput, distanceKm, t.MaxKm)
	}
	rule, ok := t.Sizes[size]
	if !ok {
		return Price{}, fmt.Errorf("%w: parcel size %q", ErrInput, size)
	}
	var (
		lines []Line
		total int64
	)
	add := func(code string, c int64) {
		if c != 0 {
			lines = append(lines, Line{Code: code, MAD: float64(c) / 100})
			total += c
		}
	}
	base := centimes(t.BaseMAD)
	dist := centimes(t.PerKmMAD * distanceKm)
	add(LineBase, base)
	add(LineDistance, dist)
	add(LineSize, centimes(float64(base+dist)*(rule.Multiplier-1)/100)+centimes(rule.SurchargeMAD))
	if underSupplied {
		add(LineUnderSupply, centimes(float64(total)*t.UnderSupply.Percent/100/100)+centimes(t.UnderSupply.FixedMAD))
	}
	if cod {
		add(LineCOD, centimes(t.CODFeeMAD))
	}
	if m := centimes(t.MinimumMAD); total < m {
		add(LineMinimum, m-total)
	}
	step := centimes(t.RoundToMAD)
	if r := total % step; r != 0 {
		add(LineRounding, step-r)
	}
	return Price{TotalMAD: float64(total) / 100, Breakdown: lines}, nil
}

func centimes(mad float64) int64 { return int64(math.Round(mad * 100)) }
