package source

import (
	"encoding/xml"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/agent/internal/geo"
	"github.com/tawsil/tawsil/shared/wire"
)

var updateGPX = flag.Bool("update-gpx", false, "rewrite testdata/casablanca-ride.gpx from the simulator")

func TestSimRidesPlausibly(t *testing.T) {
	for _, city := range Cities() {
		t.Run(city.Name, func(t *testing.T) {
			s := NewSim(city, time.Second, 42)
			start := time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC)
			prev := s.Step(start, 1).Fix
			var moved, still int
			for i := 1; i < 3600; i++ {
				f := s.Step(start.Add(time.Duration(i)*time.Second), 1).Fix
				if err := wire.CheckFix(f); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if d := geo.Distance(prev.Lat, prev.Lng, f.Lat, f.Lng); d > 12+40 {
					t.Fatalf("step %d jumped %.0f m in one second", i, d)
				}
				if near := nearestNode(city, f.Lat, f.Lng); near > 3000 {
					t.Fatalf("step %d is %.0f m from every intersection: left the city", i, near)
				}
				if f.Speed > 0.5 {
					moved++
				} else {
					still++
				}
				prev = f
			}
			if moved < 1800 || still < 60 {
				t.Fatalf("in an hour: %d s moving, %d s still; want a courier who mostly rides and sometimes stops", moved, still)
			}
		})
	}
}

func nearestNode(c City, lat, lng float64) float64 {
	best := math.Inf(1)
	for _, n := range c.Nodes {
		best = math.Min(best, geo.Distance(lat, lng, n.Lat, n.Lng))
	}
	return best
}

func TestCityGraphsAreConnected(t *testing.T) {
	for _, c := range Cities() {
		seen := map[int]bool{0: true}
		stack := []int{0}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, e := range c.Edges {
				for _, m := range []int{e[0], e[1]} {
					if (e[0] == n || e[1] == n) && !seen[m] {
						seen[m] = true
						stack = append(stack, m)
					}
				}
			}
		}
		if len(seen) != len(c.Nodes) {
			t.Errorf("%s: %d of %d intersections reachable", c.Name, len(seen), len(c.Nodes))
		}
	}
}

// TestWriteRideGPX regenerates the committed Casablanca ride with
// -update-gpx; otherwise it checks the committed file still parses.
func TestWriteRideGPX(t *testing.T) {
	path := filepath.Join("testdata", "casablanca-ride.gpx")
	if *updateGPX {
		city, err := CityByName("casablanca")
		if err != nil {
			t.Fatal(err)
		}
		s := NewSim(city, time.Second, 2025)
		start := time.Date(2025, 6, 12, 9, 30, 0, 0, time.UTC)
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString(`<gpx version="1.1" creator="tawsil agent simulator (seed 2025)" xmlns="http://www.topografix.com/GPX/1/1">` + "\n")
		b.WriteString("<metadata><name>Casablanca scooter ride, simulated on the main boulevards, 15 min at 1 Hz</name></metadata>\n<trk><name>casablanca-ride</name><trkseg>\n")
		for i := 0; i < 900; i++ {
			f := s.Step(start.Add(time.Duration(i)*time.Second), 1).Fix
			fmt.Fprintf(&b, `<trkpt lat="%.7f" lon="%.7f"><ele>%d</ele><time>%s</time><hdop>%.1f</hdop></trkpt>`+"\n",
				f.Lat, f.Lng, 20+i%7, f.Time.Format(time.RFC3339), f.Accuracy/UERE)
		}
		b.WriteString("</trkseg></trk>\n</gpx>\n")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fixes, err := ParseGPX(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixes) != 900 {
		t.Fatalf("%d points, want 900", len(fixes))
	}
}
