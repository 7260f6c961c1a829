// Package mdrp runs Tawsil's dispatch on Meal Delivery Routing Problem
// instances (Reyes, Erera, Savelsbergh, Sahasrabudhe, O'Neil, 2018; the
// grubhub/mdrplib format): it reads an instance directory, plays the day in
// virtual minutes with a dispatch policy, writes the three solution files
// the public evaluator reads, and checks and scores a solution by the
// evaluator's rules with its own implementation of them.
//
// Times are integer minutes from the start of the day and coordinates are
// metres, as in the instances. Travel between two points takes
// ceil(euclidean metres / meters_per_minute) minutes.
package mdrp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrFormat: an instance file is not in the expected format.
var ErrFormat = errors.New("mdrp: bad instance file")

// Params are the instance-wide parameters (instance_parameters.txt).
type Params struct {
	MetersPerMinute   float64
	PickupService     int // minutes at a restaurant
	DropoffService    int // minutes at a customer
	TargetC2D         int // target click-to-door, minutes
	MaxC2D            int // maximum click-to-door, minutes
	PayPerOrder       float64
	GuaranteedPerHour float64
}

// Order is one customer order.
type Order struct {
	ID         string
	X, Y       float64
	Placed     int
	Restaurant string
	Ready      int
}

// Restaurant is a pick-up point.
type Restaurant struct {
	ID   string
	X, Y float64
}

// Courier is one courier's shift: it starts at X, Y at On and may not pick
// up after Off.
type Courier struct {
	ID      string
	X, Y    float64
	On, Off int
}

// Instance is a whole MDRP instance.
type Instance struct {
	Name        string
	Params      Params
	Orders      []Order // in file order
	Restaurants map[string]Restaurant
	Couriers    []Courier
}

// Load reads orders.txt, restaurants.txt, couriers.txt and
// instance_parameters.txt from dir.
func Load(dir string) (*Instance, error) {
	in := &Instance{Name: filepath.Base(filepath.Clean(dir)), Restaurants: map[string]Restaurant{}}
	read := func(name string, each func(get func(col string) (string, error)) error) error {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := readTable(f, each); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	err := read("instance_parameters.txt", func(get func(string) (string, error)) error {
		p := &in.Params
		return firstErr(
			num(get, "meters_per_minute", &p.MetersPerMinute),
			whole(get, "pickup service minutes", &p.PickupService),
			whole(get, "dropoff service minutes", &p.DropoffService),
			whole(get, "target click-to-door", &p.TargetC2D),
			whole(get, "maximum click-to-door", &p.MaxC2D),
			num(get, "pay per order", &p.PayPerOrder),
			num(get, "guaranteed pay per hour", &p.GuaranteedPerHour),
		)
	})
	if err != nil {
		return nil, err
	}
	if p := in.Params; !(p.MetersPerMinute > 0) || p.PickupService < 0 || p.DropoffService < 0 || p.TargetC2D <= 0 || p.MaxC2D < p.TargetC2D {
		return nil, fmt.Errorf("%w: instance_parameters.txt: out of range: %+v", ErrFormat, p)
	}
	err = read("restaurants.txt", func(get func(string) (string, error)) error {
		var r Restaurant
		if err := firstErr(text(get, "restaurant", &r.ID), num(get, "x", &r.X), num(get, "y", &r.Y)); err != nil {
			return err
		}
		if _, dup := in.Restaurants[r.ID]; dup {
			return fmt.Errorf("%w: restaurant %s twice", ErrFormat, r.ID)
		}
		in.Restaurants[r.ID] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	err = read("orders.txt", func(get func(string) (string, error)) error {
		var o Order
		if err := firstErr(text(get, "order", &o.ID), num(get, "x", &o.X), num(get, "y", &o.Y),
			whole(get, "placement_time", &o.Placed), text(get, "restaurant", &o.Restaurant), whole(get, "ready_time", &o.Ready)); err != nil {
			return err
		}
		if _, ok := in.Restaurants[o.Restaurant]; !ok {
			return fmt.Errorf("%w: order %s: unknown restaurant %s", ErrFormat, o.ID, o.Restaurant)
		}
		if seen[o.ID] {
			return fmt.Errorf("%w: order %s twice", ErrFormat, o.ID)
		}
		seen[o.ID] = true
		in.Orders = append(in.Orders, o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = read("couriers.txt", func(get func(string) (string, error)) error {
		var c Courier
		if err := firstErr(text(get, "courier", &c.ID), num(get, "x", &c.X), num(get, "y", &c.Y),
			whole(get, "on_time", &c.On), whole(get, "off_time", &c.Off)); err != nil {
			return err
		}
		if seen[c.ID] {
			return fmt.Errorf("%w: id %s twice", ErrFormat, c.ID)
		}
		seen[c.ID] = true
		in.Couriers = append(in.Couriers, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// readTable reads a header line (tab-separated names, which may hold
// spaces) and then one record a line (tab- or space-separated values).
func readTable(r io.Reader, each func(get func(col string) (string, error)) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	if !sc.Scan() {
		return fmt.Errorf("%w: no header line", ErrFormat)
	}
	cols := map[string]int{}
	header := strings.TrimRight(sc.Text(), "\r")
	names := strings.Split(header, "\t")
	if len(names) == 1 {
		names = strings.Fields(header)
	}
	for i, n := range names {
		cols[strings.ToLower(strings.TrimSpace(n))] = i
	}
	line := 1
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		get := func(col string) (string, error) {
			i, ok := cols[col]
			if !ok {
				return "", fmt.Errorf("%w: no column %q", ErrFormat, col)
			}
			if i >= len(fields) {
				return "", fmt.Errorf("%w: line %d: missing %q", ErrFormat, line, col)
			}
			return fields[i], nil
		}
		if err := each(get); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	return sc.Err()
}

func text(get func(string) (string, error), col string, dst *string) error {
	v, err := get(col)
	*dst = v
	return err
}

func num(get func(string) (string, error), col string, dst *float64) error {
	v, err := get(col)
	if err != nil {
		return err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: %s = %q", ErrFormat, col, v)
	}
	*dst = f
	return nil
}

func whole(get func(string) (string, error), col string, dst *int) error {
	var f float64
	if err := num(get, col, &f); err != nil {
		return err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1e9 {
		return fmt.Errorf("%w: %s = %v is not a whole number of minutes", ErrFormat, col, f)
	}
	*dst = int(f)
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TravelMinutes is the instance's travel time between two points.
func (p Params) TravelMinutes(ax, ay, bx, by float64) int {
	return int(math.Ceil(math.Hypot(bx-ax, by-ay) / p.MetersPerMinute))
}

// before and after split a service time around its handover: the courier
// spends before minutes on arrival (parking, walking in), hands over, and
// after minutes leaving. The handover is at least a minute after arrival so
// that it falls strictly inside the stay, as the evaluator requires.
func split(service int) (before, after int) {
	before = max(1, (service+1)/2)
	return before, max(0, service-before)
}

// CourierHours is the sum of every shift, in hours.
func (in *Instance) CourierHours() float64 {
	var m int
	for _, c := range in.Couriers {
		m += c.Off - c.On
	}
	return float64(m) / 60
}
