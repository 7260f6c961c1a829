package failure

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
)

// Rule names of decisions that no rule of the file made.
const (
	RuleUnverified  = "unverified"        // an unverified attempt no `verified: false` rule matched
	RuleInvalid     = "invalid-situation" // the situation itself is malformed
	RuleMaxAttempts = "max-attempts"      // the attempt limit; "max-attempts/<policy>" for a declared policy
)

// Situation is a failed attempt to decide on.
type Situation struct {
	Reason         Reason
	Attempt        int     // 1-based number of this (failed) attempt
	MinutesLeft    float64 // minutes before the promise; negative once late
	MerchantPolicy string
	COD            bool
	ParcelSize     string // S, M, L or empty when unknown
	Verified       bool   // see Verify
}

// Decision is what to do, which rule said so, and how the rules were read.
type Decision struct {
	Action Action
	Rule   string
	Params Params
	// Overridden is the name of the rule whose action the attempt limit
	// replaced, when Rule is a max-attempts decision.
	Overridden string
	// Explain lists, in order, each rule checked and why it did not match,
	// then what decided (for dry runs and the order's audit trail).
	Explain []string
}

// policy returns the merchant policy's limit and final action, falling back
// to the rule set's.
func (rs *RuleSet) policy(name string) (Policy, bool) {
	p := Policy{Name: name, MaxAttempts: rs.MaxAttempts, FinalAction: rs.FinalAction}
	i := slices.IndexFunc(rs.Policies, func(p Policy) bool { return p.Name == name })
	if i < 0 {
		return p, false
	}
	if rs.Policies[i].MaxAttempts > 0 {
		p.MaxAttempts = rs.Policies[i].MaxAttempts
	}
	if rs.Policies[i].FinalAction != "" {
		p.FinalAction = rs.Policies[i].FinalAction
	}
	return p, true
}

// Decide applies the rules to s: the first matching rule wins. Unverified
// attempts are only matched by rules that say `verified: false`; when none
// does, the decision is DispatcherReview with rule RuleUnverified. Once the
// attempt reaches the merchant policy's max attempts, an action that would
// lead to another attempt (retry_later, contact_customer, reassign) is
// replaced by the policy's final action, with rule "max-attempts/<policy>"
// (or "max-attempts" when the policy is not declared and the global limit applies).
func (rs *RuleSet) Decide(s Situation) Decision {
	var d Decision
	if _, err := ParseReason(string(s.Reason)); err != nil || s.Attempt < 1 || !finite(s.MinutesLeft) {
		d.Action, d.Rule = DispatcherReview, RuleInvalid
		d.Explain = append(d.Explain, fmt.Sprintf("malformed situation: reason %q, attempt %d, minutes left %v", s.Reason, s.Attempt, s.MinutesLeft))
		return d
	}
	pol, known := rs.policy(s.MerchantPolicy)
	if !known {
		d.Explain = append(d.Explain, fmt.Sprintf("merchant policy %q not declared: using max_attempts %d, final action %s", s.MerchantPolicy, pol.MaxAttempts, pol.FinalAction))
	}
	matched := -1
	for i, r := range rs.Rules {
		if why := r.Match.mismatch(s); why != "" {
			d.Explain = append(d.Explain, fmt.Sprintf("rule %d %q: %s", i+1, r.Name, why))
			continue
		}
		matched = i
		break
	}
	if matched < 0 {
		// Only unverified attempts get here: the catch-all applies to verified ones.
		d.Action, d.Rule = DispatcherReview, RuleUnverified
		d.Explain = append(d.Explain, "attempt not verified and no rule for unverified attempts matched: a dispatcher decides")
		return d
	}
	r := rs.Rules[matched]
	d.Action, d.Rule, d.Params = r.Action, r.Name, r.Params
	d.Explain = append(d.Explain, fmt.Sprintf("rule %d %q matched: %s", matched+1, r.Name, r.Action))
	if s.Attempt >= pol.MaxAttempts && !r.Action.Final() {
		d.Explain = append(d.Explain, fmt.Sprintf("attempt %d reaches max_attempts %d of policy %q: %s replaced by %s",
			s.Attempt, pol.MaxAttempts, pol.Name, r.Action, pol.FinalAction))
		d.Overridden = r.Name
		d.Action, d.Rule = pol.FinalAction, RuleMaxAttempts
		if known {
			d.Rule += "/" + pol.Name
		}
		d.Params = Params{NotifyCustomer: true}
	}
	return d
}

// mismatch returns why s does not match m, or "" when it does.
func (m Match) mismatch(s Situation) string {
	switch {
	case m.Verified == nil && !s.Verified, m.Verified != nil && *m.Verified != s.Verified:
		if s.Verified {
			return "applies to unverified attempts only"
		}
		return "attempt not verified"
	case len(m.Reasons) > 0 && !slices.Contains(m.Reasons, s.Reason):
		return fmt.Sprintf("reason %s not in %s", s.Reason, list(m.Reasons))
	case m.Attempt != nil && (s.Attempt < m.Attempt.Min || m.Attempt.Max > 0 && s.Attempt > m.Attempt.Max):
		return fmt.Sprintf("attempt %d not in %s", s.Attempt, m.Attempt)
	case m.MinutesLeft != nil && (m.MinutesLeft.Min != nil && s.MinutesLeft < *m.MinutesLeft.Min ||
		m.MinutesLeft.Max != nil && s.MinutesLeft >= *m.MinutesLeft.Max):
		return fmt.Sprintf("minutes left %.1f not in %s", s.MinutesLeft, m.MinutesLeft)
	case len(m.MerchantPolicy) > 0 && !slices.Contains(m.MerchantPolicy, s.MerchantPolicy):
		return fmt.Sprintf("merchant policy %q not in %s", s.MerchantPolicy, list(m.MerchantPolicy))
	case m.COD != nil && *m.COD != s.COD:
		return fmt.Sprintf("cod %t, rule wants %t", s.COD, *m.COD)
	case len(m.ParcelSize) > 0 && !slices.Contains(m.ParcelSize, s.ParcelSize):
		return fmt.Sprintf("parcel size %q not in %s", s.ParcelSize, list(m.ParcelSize))
	}
	return ""
}

func list[T ~string](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = string(x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (r *IntRange) String() string {
	switch {
	case r.Max == 0:
		return fmt.Sprintf("[%d, ∞)", r.Min)
	case r.Min == r.Max:
		return fmt.Sprintf("[%d]", r.Min)
	}
	return fmt.Sprintf("[%d, %d]", r.Min, r.Max)
}

func (r *FloatRange) String() string {
	lo, hi := "-∞", "∞"
	if r.Min != nil {
		lo = fmt.Sprint(*r.Min)
	}
	if r.Max != nil {
		hi = fmt.Sprint(*r.Max)
	}
	return "[" + lo + ", " + hi + ")"
}

// Engine decides with the current rule set and reloads it without a restart.
// It is safe for concurrent use.
type Engine struct {
	rules  atomic.Pointer[RuleSet]
	logger *slog.Logger
}

// NewEngine returns an Engine with rs (Default() when nil).
func NewEngine(rs *RuleSet, logger *slog.Logger) *Engine {
	if rs == nil {
		rs = Default()
	}
	e := &Engine{logger: logger}
	e.rules.Store(rs)
	return e
}

// Rules returns the current rule set; callers must not modify it.
func (e *Engine) Rules() *RuleSet { return e.rules.Load() }

// Decide applies the current rules; see RuleSet.Decide.
func (e *Engine) Decide(s Situation) Decision { return e.rules.Load().Decide(s) }

// Reload loads path and swaps it in. On any error the current rules stay and
// the error (wrapping ErrInvalidRules for a bad file) is returned.
func (e *Engine) Reload(path string) error {
	rs, err := Load(path)
	if err != nil {
		return fmt.Errorf("reload: keeping the current rules: %w", err)
	}
	e.rules.Store(rs)
	e.logger.Info("failure rules reloaded", "path", path, "rules", len(rs.Rules))
	return nil
}
