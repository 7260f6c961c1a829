// Command mdrp runs Tawsil's dispatch core on Meal Delivery Routing Problem
// instances (grubhub/mdrplib format) in virtual time, beside two baselines,
// writes each policy's three solution files and prints the evaluator's
// figures.
//
//	go run ./cmd/mdrp -instance DIR [-instance DIR2 ...] -out DIR [-variants]
//
// DIR holds orders.txt, restaurants.txt, couriers.txt and
// instance_parameters.txt; a DIR without orders.txt is taken as a folder
// of instance folders.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tawsil/tawsil/backend/internal/mdrp"
)

type dirs []string

func (d *dirs) String() string     { return strings.Join(*d, ",") }
func (d *dirs) Set(v string) error { *d = append(*d, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mdrp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mdrp", flag.ContinueOnError)
	var instances dirs
	fs.Var(&instances, "instance", "instance directory (repeatable); a folder of instance folders also works")
	out := fs.String("out", "", "write each policy's solution files under OUT/<instance>/<policy>")
	variants := fs.Bool("variants", false, "also run Tawsil's variant that takes back accepted orders not started on (not the server's policy)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(instances) == 0 {
		fs.Usage()
		return errors.New("no -instance given")
	}
	var all []string
	for _, d := range instances {
		if _, err := os.Stat(filepath.Join(d, "orders.txt")); err == nil {
			all = append(all, d)
			continue
		}
		sub, err := filepath.Glob(filepath.Join(d, "*", "orders.txt"))
		if err != nil || len(sub) == 0 {
			return fmt.Errorf("%s: no orders.txt in it or its sub-folders", d)
		}
		for _, s := range sub {
			all = append(all, filepath.Dir(s))
		}
	}
	infeasible := 0
	var names []string
	pools := map[string]*mdrp.Pool{}
	for _, d := range all {
		in, err := mdrp.Load(d)
		if err != nil {
			return fmt.Errorf("load %s: %w", d, err)
		}
		ps, err := mdrp.Policies(in, *variants)
		if err != nil {
			return err
		}
		var rs []mdrp.Result
		for _, p := range ps {
			r := mdrp.Play(in, p)
			rs = append(rs, r)
			if pools[r.Policy] == nil {
				names, pools[r.Policy] = append(names, r.Policy), &mdrp.Pool{}
			}
			pools[r.Policy].Add(in, r)
			if len(r.Violations) > 0 {
				infeasible++
				for _, v := range r.Violations[:min(5, len(r.Violations))] {
					fmt.Fprintf(os.Stderr, "%s %s: %s\n", in.Name, p.Name(), v)
				}
			}
			if *out != "" {
				name := strings.Fields(p.Name())[0]
				if err := r.Solution.Write(in, filepath.Join(*out, in.Name, name)); err != nil {
					return err
				}
			}
		}
		mdrp.WriteTable(os.Stdout, in, rs)
		fmt.Println()
	}
	if len(all) > 1 {
		mdrp.WritePooled(os.Stdout, names, pools)
	}
	if infeasible > 0 {
		return fmt.Errorf("%d infeasible solutions", infeasible)
	}
	return nil
}
