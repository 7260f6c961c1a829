package mdrp

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Result is one policy's day on one instance.
type Result struct {
	Policy     string
	Solution   *Solution
	Violations []string
	Metrics    Metrics
	// DecisionP50, DecisionP99 are wall-clock per-order decision times
	// (policies that record them); DecisionCPUP50, DecisionCPUP99 the
	// same in the deciding thread's CPU time.
	DecisionP50, DecisionP99       time.Duration
	DecisionCPUP50, DecisionCPUP99 time.Duration
}

// Play runs policy on in, checks the solution by the evaluator's rules
// and scores it.
func Play(in *Instance, p Policy) Result {
	s := Run(in, p)
	r := Result{Policy: p.Name(), Solution: s, Violations: Check(in, s), Metrics: Score(in, s)}
	if t, ok := p.(*Tawsil); ok && len(t.Decisions) > 0 {
		r.DecisionP50, r.DecisionP99 = percentiles(t.Decisions)
		r.DecisionCPUP50, r.DecisionCPUP99 = percentiles(t.DecisionsCPU)
	}
	return r
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	d := slices.Clone(ds)
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// Policy names of Tawsil's rows: the server's decision, and the variant
// that takes back orders not started on (not what the server does).
const (
	ServerName   = "tawsil (the server's epoch dispatch)"
	TakeBackName = "tawsil-takeback (variant, not server's)"
)

// Policies returns Tawsil's dispatch and the two baselines for in; with
// variants, also Tawsil's take-back variant.
func Policies(in *Instance, variants bool) ([]Policy, error) {
	t, err := NewTawsil(in, TawsilConfig(in.Params), false, ServerName)
	if err != nil {
		return nil, err
	}
	ps := []Policy{t, Greedy{}, Rolling{Horizon: 10, Window: 10, MaxBundle: 3}}
	if variants {
		v, err := NewTawsil(in, TawsilConfig(in.Params), true, TakeBackName)
		if err != nil {
			return nil, err
		}
		ps = append(ps, v)
	}
	return ps, nil
}

// WriteTable prints the results side by side, with the instance's upper
// bound on orders per courier-hour.
func WriteTable(w io.Writer, in *Instance, rs []Result) {
	fmt.Fprintf(w, "instance %s: %d orders, %d couriers, %.1f courier-hours; upper bound %.2f orders per courier-hour\n",
		in.Name, len(in.Orders), len(in.Couriers), in.CourierHours(), float64(len(in.Orders))/in.CourierHours())
	fmt.Fprintf(w, "%-40s %9s %10s %8s %8s %8s %8s %9s %9s %6s %s\n",
		"policy", "feasible", "delivered", "c2d", "c2d p90", "overage", "ord/c-h", "pay", "pay/ord", "bundle", "decision p50/p99 wall (cpu)")
	for _, r := range rs {
		m := r.Metrics
		feasible := "yes"
		if len(r.Violations) > 0 {
			feasible = fmt.Sprintf("NO (%d)", len(r.Violations))
		}
		dec := "-"
		if r.DecisionP50 > 0 {
			us := func(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }
			dec = fmt.Sprintf("%s / %s (%s / %s)", us(r.DecisionP50), us(r.DecisionP99), us(r.DecisionCPUP50), us(r.DecisionCPUP99))
		}
		fmt.Fprintf(w, "%-40s %9s %9.2f%% %8.1f %8.1f %8.2f %8.2f %9.0f %9.2f %6.2f %s\n",
			r.Policy, feasible, 100*m.DeliveredShare(), m.ClickToDoor.Mean, m.ClickToDoor.P90, m.Overage.Mean,
			m.OrdersPerCourierHour, m.TotalPay, m.CostPerOrder(), m.BundleSize.Mean, dec)
	}
}

// Pool adds up one policy's days over several instances, as the issue's
// aim is stated: every order of every instance in one click-to-door
// distribution, the delivered share over all orders, and the cost per
// order as all pay over all delivered orders.
type Pool struct {
	Instances, Infeasible int
	Orders, Delivered     int
	Pay                   float64
	c2d, over             []float64
}

// Add counts r, the policy's result on in.
func (p *Pool) Add(in *Instance, r Result) {
	p.Instances++
	if len(r.Violations) > 0 {
		p.Infeasible++
	}
	p.Orders += len(in.Orders)
	p.Delivered += r.Metrics.Delivered
	p.Pay += r.Metrics.TotalPay
	for _, o := range in.Orders {
		if d := r.Solution.Orders[o.ID]; d.Delivered {
			c := float64(d.DropoffAt - o.Placed)
			p.c2d = append(p.c2d, c)
			p.over = append(p.over, max(0, c-float64(in.Params.TargetC2D)))
		}
	}
}

// ClickToDoor and Overage describe the pooled orders.
func (p *Pool) ClickToDoor() Stats { return describe(p.c2d) }

// Overage is the pooled click-to-door beyond each instance's target.
func (p *Pool) Overage() Stats { return describe(p.over) }

// WritePooled prints each policy's pool (in the order given).
func WritePooled(w io.Writer, names []string, pools map[string]*Pool) {
	fmt.Fprintf(w, "all instances pooled (every order of every instance in one distribution):\n")
	fmt.Fprintf(w, "%-40s %9s %9s %10s %8s %8s %8s %9s\n", "policy", "instances", "feasible", "delivered", "c2d", "c2d p90", "overage", "pay/ord")
	for _, n := range names {
		p := pools[n]
		c, o := p.ClickToDoor(), p.Overage()
		delivered, cost := 0.0, math.Inf(1)
		if p.Orders > 0 {
			delivered = 100 * float64(p.Delivered) / float64(p.Orders)
		}
		if p.Delivered > 0 {
			cost = p.Pay / float64(p.Delivered)
		}
		fmt.Fprintf(w, "%-40s %9d %9d %9.2f%% %8.1f %8.1f %8.2f %9.2f\n", n, p.Instances, p.Instances-p.Infeasible, delivered, c.Mean, c.P90, o.Mean, cost)
	}
}
