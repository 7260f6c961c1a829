package source

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/tawsil/tawsil/agent/internal/geo"
	"github.com/tawsil/tawsil/shared/wire"
)

// City is a street graph a simulated courier rides on: real intersections
// of a city's main boulevards (coordinates approximate to a few tens of
// metres) joined by the streets between them, ridden as straight segments.
type City struct {
	Name  string
	Nodes []Node
	Edges [][2]int // undirected, by index into Nodes
}

// Node is an intersection or landmark.
type Node struct {
	Name     string
	Lat, Lng float64
}

// Cities are the built-in street graphs.
func Cities() []City {
	return []City{casablanca(), rabat(), tanger()}
}

// CityByName finds a built-in city, case-insensitively.
func CityByName(name string) (City, error) {
	var names []string
	for _, c := range Cities() {
		if strings.EqualFold(c.Name, name) {
			return c, nil
		}
		names = append(names, c.Name)
	}
	return City{}, fmt.Errorf("unknown city %q (have %s)", name, strings.Join(names, ", "))
}

func casablanca() City {
	return City{
		Name: "casablanca",
		Nodes: []Node{
			{"Place des Nations Unies", 33.5966, -7.6187},               // 0
			{"Place Mohammed V", 33.5925, -7.6186},                      // 1
			{"Casa Port", 33.6006, -7.6133},                             // 2
			{"Marché Central (Bd Mohammed V)", 33.5956, -7.6113},        // 3
			{"Casa Voyageurs", 33.5897, -7.5912},                        // 4
			{"Mers Sultan", 33.5840, -7.6140},                           // 5
			{"Bd Abdelmoumen x Bd Zerktouni", 33.5870, -7.6250},         // 6
			{"Twin Center (Zerktouni x Al Massira)", 33.5874, -7.6326},  // 7
			{"Gauthier (Bd d'Anfa)", 33.5916, -7.6290},                  // 8
			{"Racine (Bd d'Anfa x Bd Moulay Rachid)", 33.5912, -7.6399}, // 9
			{"Maarif (Al Massira x Roudani)", 33.5834, -7.6383},         // 10
			{"Bourgogne", 33.5990, -7.6370},                             // 11
			{"Hassan II Mosque", 33.6080, -7.6325},                      // 12
			{"Anfa (Bd de la Corniche)", 33.6004, -7.6622},              // 13
			{"Bd Ghandi x Al Massira", 33.5810, -7.6510},                // 14
			{"Ain Diab Corniche", 33.5935, -7.6780},                     // 15
			{"Bd Ghandi x Abdelkrim Khattabi", 33.5750, -7.6520},        // 16
			{"Morocco Mall", 33.5760, -7.7062},                          // 17
			{"Oasis", 33.5600, -7.6310},                                 // 18
			{"Derb Omar", 33.5960, -7.6050},                             // 19
		},
		Edges: [][2]int{
			{0, 1}, {0, 2}, {0, 3}, {2, 3}, {3, 19}, {19, 4}, {3, 4}, {1, 5}, {5, 4}, {1, 6}, {5, 6},
			{6, 7}, {1, 8}, {8, 7}, {8, 9}, {7, 10}, {9, 10}, {9, 11}, {11, 12}, {12, 2}, {0, 11},
			{11, 13}, {9, 13}, {10, 14}, {14, 13}, {13, 15}, {14, 16}, {16, 17}, {15, 17}, {16, 18},
			{18, 10}, {18, 5},
		},
	}
}

func rabat() City {
	return City{
		Name: "rabat",
		Nodes: []Node{
			{"Bab Rouah", 34.0155, -6.8352},                    // 0
			{"Rabat Ville (Av. Mohammed V)", 34.0150, -6.8342}, // 1
			{"Av. Hassan II x Mohammed V", 34.0205, -6.8340},   // 2
			{"Hassan Tower", 34.0240, -6.8225},                 // 3
			{"Kasbah des Oudayas", 34.0317, -6.8367},           // 4
			{"Agdal (Av. Fal Ould Oumeir)", 33.9990, -6.8520},  // 5
			{"Rabat Agdal station", 33.9990, -6.8460},          // 6
			{"Hay Riad (Mahaj Riad)", 33.9600, -6.8700},        // 7
			{"Place Pietri", 34.0195, -6.8355},                 // 8
		},
		Edges: [][2]int{{0, 1}, {1, 2}, {2, 3}, {2, 8}, {8, 4}, {3, 4}, {0, 5}, {1, 6}, {5, 6}, {5, 7}, {6, 7}, {0, 8}},
	}
}

func tanger() City {
	return City{
		Name: "tanger",
		Nodes: []Node{
			{"Place de France", 35.7780, -5.8130},            // 0
			{"Grand Socco", 35.7845, -5.8125},                // 1
			{"Tanja Marina Bay", 35.7830, -5.8060},           // 2
			{"Av. Mohammed VI (corniche)", 35.7750, -5.8000}, // 3
			{"Tanger Ville station", 35.7650, -5.7860},       // 4
			{"Malabata", 35.7790, -5.7700},                   // 5
			{"Bd Pasteur", 35.7775, -5.8110},                 // 6
			{"Iberia", 35.7730, -5.8220},                     // 7
			{"Moujahidine", 35.7580, -5.8140},                // 8
		},
		Edges: [][2]int{{0, 1}, {0, 6}, {6, 2}, {1, 2}, {2, 3}, {6, 3}, {3, 4}, {4, 5}, {3, 5}, {0, 7}, {7, 8}, {8, 4}, {6, 8}},
	}
}

// Sim is a simulated scooter courier: it rides from intersection to
// intersection, slows at crossings, waits at red lights, and now and then
// stands still for a pickup or a drop-off. Its receiver adds a few metres of
// noise and reports accuracy; its battery drains.
type Sim struct {
	city     City
	adj      [][]int
	interval time.Duration
	rng      *rand.Rand

	from, to int
	progress float64 // metres along the current edge
	length   float64
	speed    float64 // m/s
	cruise   float64
	waitLeft float64 // seconds still
	battery  float64
	heading  float64
}

// NewSim starts a courier at a random intersection of city. interval is
// the sampling period (0: one second); seed 0 picks one from the clock.
func NewSim(city City, interval time.Duration, seed int64) *Sim {
	if interval <= 0 {
		interval = time.Second
	}
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s := &Sim{city: city, interval: interval, rng: rand.New(rand.NewPCG(uint64(seed), 0x7a5e11))}
	s.adj = make([][]int, len(city.Nodes))
	for _, e := range city.Edges {
		s.adj[e[0]] = append(s.adj[e[0]], e[1])
		s.adj[e[1]] = append(s.adj[e[1]], e[0])
	}
	for i := range s.adj {
		sort.Ints(s.adj[i])
	}
	s.from = s.rng.IntN(len(city.Nodes))
	s.battery = 60 + 40*s.rng.Float64()
	s.pickEdge(-1)
	return s
}

// Finite is false.
func (s *Sim) Finite() bool { return false }

// Counters is empty.
func (s *Sim) Counters() map[string]uint64 { return map[string]uint64{} }

// Run emits one sample per interval, on the wall clock.
func (s *Sim) Run(ctx context.Context, emit Emit) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if err := emit(s.Step(now, s.interval.Seconds())); err != nil {
				return err
			}
		}
	}
}

// Step advances the courier by dt seconds and returns what its receiver
// reads at now.
func (s *Sim) Step(now time.Time, dt float64) Sample {
	s.advance(dt)
	n1, n2 := s.city.Nodes[s.from], s.city.Nodes[s.to]
	lat, lng := geo.Interpolate(n1.Lat, n1.Lng, n2.Lat, n2.Lng, s.progress/s.length)
	accuracy := 4 + 8*s.rng.Float64()
	// Receiver noise: about accuracy/2 metres, one sigma.
	lat, lng = geo.Offset(lat, lng, s.rng.NormFloat64()*accuracy/2, s.rng.NormFloat64()*accuracy/2)
	s.battery = math.Max(1, s.battery-dt/240) // 1 % every 4 minutes
	f := wire.Fix{Time: now.UTC().Truncate(time.Millisecond), Lat: lat, Lng: lng,
		Accuracy: math.Round(accuracy*10) / 10, Speed: math.Max(0, s.speed+s.rng.NormFloat64()*0.2),
		Heading: wire.Unknown, Battery: int(s.battery)}
	if s.speed > 0.5 {
		f.Heading = s.heading
	}
	if f.Speed < 0.05 {
		f.Speed = 0
	}
	return Sample{Fix: f, Read: now}
}

func (s *Sim) advance(dt float64) {
	for dt > 0 {
		if s.waitLeft > 0 {
			w := math.Min(dt, s.waitLeft)
			s.waitLeft -= w
			dt -= w
			s.speed = 0
			continue
		}
		left := s.length - s.progress
		// Slow down within 40 m of the next crossing.
		target := s.cruise
		if left < 40 {
			target = math.Max(3, s.cruise*left/40)
		}
		// Accelerate at most 2 m/s².
		s.speed = math.Min(target, s.speed+2*dt)
		step := s.speed * dt
		if step < left {
			s.progress += step
			return
		}
		// Reached the intersection: spend the remaining time there.
		dt -= left / math.Max(s.speed, 0.1)
		came := s.from
		s.from = s.to
		switch r := s.rng.Float64(); {
		case r < 0.08:
			s.waitLeft = 60 + 180*s.rng.Float64() // pickup or drop-off
		case r < 0.45:
			s.waitLeft = 5 + 40*s.rng.Float64() // red light
		}
		s.pickEdge(came)
	}
}

// pickEdge chooses the next street from s.from, avoiding a U-turn back to
// prev when there is another way.
func (s *Sim) pickEdge(prev int) {
	next := s.adj[s.from]
	choices := make([]int, 0, len(next))
	for _, n := range next {
		if n != prev || len(next) == 1 {
			choices = append(choices, n)
		}
	}
	s.to = choices[s.rng.IntN(len(choices))]
	a, b := s.city.Nodes[s.from], s.city.Nodes[s.to]
	s.length = geo.Distance(a.Lat, a.Lng, b.Lat, b.Lng)
	s.heading = geo.Bearing(a.Lat, a.Lng, b.Lat, b.Lng)
	s.progress = 0
	s.cruise = 6 + 6*s.rng.Float64() // 22-43 km/h in city traffic
}
