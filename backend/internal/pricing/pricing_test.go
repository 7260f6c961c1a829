package pricing

import (
	"errors"
	"math"
	"testing"

	"github.com/tawsil/tawsil/backend/internal/order"
)

func mustPricer(tb testing.TB, t Tariff) *Pricer {
	tb.Helper()
	p, err := New(t)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return p
}

func TestQuote(t *testing.T) {
	p := mustPricer(t, Default())
	tests := []struct {
		name  string
		km    float64
		size  order.Size
		cod   bool
		under bool
		want  float64
		lines map[string]float64
	}{
		// 12 + 0 = 12 < 15 minimum
		{"minimum", 0.5, order.SizeS, false, false, 15, map[string]float64{LineBase: 12, LineDistance: 1.25, LineMinimum: 1.75}},
		// 12 + 4*2.5 = 22
		{"small 4 km", 4, order.SizeS, false, false, 22, map[string]float64{LineBase: 12, LineDistance: 10}},
		// 22 * 1.15 = 25.30 -> 25.50
		{"medium 4 km", 4, order.SizeM, false, false, 25.5, map[string]float64{LineSize: 3.3, LineRounding: 0.2}},
		// 22*1.4 + 5 = 35.80 -> 36
		{"large 4 km", 4, order.SizeL, false, false, 36, map[string]float64{LineSize: 13.8, LineRounding: 0.2}},
		// 22 + 3 cod = 25
		{"cod", 4, order.SizeS, true, false, 25, map[string]float64{LineCOD: 3}},
		// 22 + 20% = 26.40 -> 26.50
		{"under-supplied", 4, order.SizeS, false, true, 26.5, map[string]float64{LineUnderSupply: 4.4, LineRounding: 0.1}},
		// 12+7.7*2.5=31.25; M: *1.15 = 35.9375 -> size 4.69 => 35.94; +20% 7.19 => 43.13; +3 => 46.13 -> 46.50
		{"all", 7.7, order.SizeM, true, true, 46.5, map[string]float64{LineDistance: 19.25, LineSize: 4.69, LineUnderSupply: 7.19, LineCOD: 3, LineRounding: 0.37}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Quote(tt.km, tt.size, tt.cod, tt.under)
			if err != nil {
				t.Fatal(err)
			}
			if got.TotalMAD != tt.want {
				t.Errorf("total = %v, want %v (%+v)", got.TotalMAD, tt.want, got.Breakdown)
			}
			var sum float64
			have := map[string]float64{}
			for _, l := range got.Breakdown {
				sum += l.MAD
				have[l.Code] = l.MAD
			}
			if math.Abs(sum-got.TotalMAD) > 1e-9 {
				t.Errorf("lines sum to %v, total %v", sum, got.TotalMAD)
			}
			for code, v := range tt.lines {
				if math.Abs(have[code]-v) > 1e-9 {
					t.Errorf("line %s = %v, want %v", code, have[code], v)
				}
			}
			if r := math.Mod(got.TotalMAD, 0.5); r != 0 {
				t.Errorf("total %v not a multiple of 0.5", got.TotalMAD)
			}
		})
	}
}

func TestQuoteMonotonic(t *testing.T) {
	p := mustPricer(t, Default())
	prev := 0.0
	for km := 0.0; km <= 40; km += 0.37 {
		q, err := p.Quote(km, order.SizeM, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if q.TotalMAD < prev {
			t.Fatalf("price fell from %v to %v at %v km", prev, q.TotalMAD, km)
		}
		prev = q.TotalMAD
	}
}

func TestQuoteRejects(t *testing.T) {
	p := mustPricer(t, Default())
	tests := []struct {
		name string
		km   float64
		size order.Size
	}{
		{"negative", -1, order.SizeS},
		{"nan", math.NaN(), order.SizeS},
		{"too far", 41, order.SizeS},
		{"size", 3, "XL"},
	}
	for _, tt := range tests {
		if _, err := p.Quote(tt.km, tt.size, false, false); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err = %v, want ErrInput", tt.name, err)
		}
	}
}

func TestTariffValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(*Tariff)
	}{
		{"negative base", func(t *Tariff) { t.BaseMAD = -1 }},
		{"rounding", func(t *Tariff) { t.RoundToMAD = 0 }},
		{"missing size", func(t *Tariff) { delete(t.Sizes, order.SizeL) }},
		{"zero multiplier", func(t *Tariff) { t.Sizes[order.SizeS] = SizeRule{} }},
		{"nan percent", func(t *Tariff) { t.UnderSupply.Percent = math.NaN() }},
	}
	for _, tt := range tests {
		tf := Default()
		tt.give(&tf)
		if _, err := New(tf); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", tt.name, err)
		}
	}
}

func TestFixedUnderSupplyAndRoundingStep(t *testing.T) {
	tf := Default()
	tf.UnderSupply = UnderSupply{FixedMAD: 4}
	tf.RoundToMAD = 1
	p := mustPricer(t, tf)
	q, err := p.Quote(3.3, order.SizeS, false, true) // 12 + 8.25 + 4 = 24.25 -> 25
	if err != nil {
		t.Fatal(err)
	}
	if q.TotalMAD != 25 {
		t.Errorf("total = %v, want 25 (%+v)", q.TotalMAD, q.Breakdown)
	}
}

func BenchmarkQuote(b *testing.B) {
	p := mustPricer(b, Default())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Quote(5.2, order.SizeM, true, true); err != nil {
			b.Fatal(err)
		}
	}
}
