package mdrp

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Assignment is one bundle: orders of one restaurant picked up together by
// one courier, in drop-off sequence.
type Assignment struct {
	AssignedAt int // when the last order joined the bundle
	PickupAt   int
	Courier    string
	Orders     []string
}

// Delivery is what happened to one order; Delivered is false for an order
// nobody carried.
type Delivery struct {
	Delivered bool
	PickupAt  int
	DropoffAt int
	Courier   string
}

// Move is one leg of a courier: it leaves From at Depart for To. From is
// "0" for the courier's starting point; To is a restaurant or order id.
type Move struct {
	Courier string
	Depart  int
	From    string
	To      string
}

// Solution is a whole day's plan, as the evaluator reads it.
type Solution struct {
	Assignments []Assignment
	Orders      map[string]Delivery
	Moves       []Move // grouped by courier, in time order within each
}

// Solution file names, as the evaluator reads them.
const (
	FileAssignments = "solution_info_assignments.txt"
	FileOrders      = "solution_info_orders.txt"
	FileCouriers    = "solution_info_couriers.txt"
)

// Write writes the three solution files into dir (created if missing).
func (s *Solution) Write(in *Instance, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(name string, fill func(w *bufio.Writer)) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		fill(w)
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	err := write(FileAssignments, func(w *bufio.Writer) {
		fmt.Fprintln(w, "assignment_time pickup_time courier orders")
		for _, a := range s.Assignments {
			fmt.Fprintf(w, "%d %d %s %s\n", a.AssignedAt, a.PickupAt, a.Courier, strings.Join(a.Orders, " "))
		}
	})
	if err != nil {
		return err
	}
	err = write(FileOrders, func(w *bufio.Writer) {
		fmt.Fprintln(w, "order placement_time restaurant x y ready_time pickup_time dropoff_time courier")
		for _, o := range in.Orders {
			d := s.Orders[o.ID]
			pick, drop, courier := "NA", "NA", "NA"
			if d.Delivered {
				pick, drop, courier = strconv.Itoa(d.PickupAt), strconv.Itoa(d.DropoffAt), d.Courier
			}
			fmt.Fprintf(w, "%s %d %s %s %s %d %s %s %s\n", o.ID, o.Placed, o.Restaurant,
				fmtNum(o.X), fmtNum(o.Y), o.Ready, pick, drop, courier)
		}
	})
	if err != nil {
		return err
	}
	return write(FileCouriers, func(w *bufio.Writer) {
		fmt.Fprintln(w, "courier departure_time origin destination")
		for _, m := range s.Moves {
			fmt.Fprintf(w, "%s %d %s %s\n", m.Courier, m.Depart, m.From, m.To)
		}
	})
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// ReadSolution reads the three solution files from dir, as the evaluator
// does: non-numeric pick-up or drop-off times mean "not delivered".
func ReadSolution(dir string) (*Solution, error) {
	s := &Solution{Orders: map[string]Delivery{}}
	lines := func(name string) ([][]string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var out [][]string
		for i, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); i > 0 && len(f) > 0 {
				out = append(out, f)
			}
		}
		return out, nil
	}
	rows, err := lines(FileAssignments)
	if err != nil {
		return nil, err
	}
	for _, f := range rows {
		if len(f) < 4 {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileAssignments, f)
		}
		at, err1 := strconv.Atoi(f[0])
		pick, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileAssignments, f)
		}
		s.Assignments = append(s.Assignments, Assignment{AssignedAt: at, PickupAt: pick, Courier: f[2], Orders: slices.Clone(f[3:])})
	}
	rows, err = lines(FileOrders)
	if err != nil {
		return nil, err
	}
	for _, f := range rows {
		if len(f) < 9 {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileOrders, f)
		}
		pick, err1 := strconv.Atoi(f[6])
		drop, err2 := strconv.Atoi(f[7])
		s.Orders[f[0]] = Delivery{Delivered: err1 == nil && err2 == nil, PickupAt: pick, DropoffAt: drop, Courier: f[8]}
	}
	rows, err = lines(FileCouriers)
	if err != nil {
		return nil, err
	}
	for _, f := range rows {
		if len(f) < 4 {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileCouriers, f)
		}
		dep, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileCouriers, f)
		}
		s.Moves = append(s.Moves, Move{Courier: f[0], Depart: dep, From: f[2], To: f[3]})
	}
	return s, nil
}
