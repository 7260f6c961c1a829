package failure

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Action is what happens to an order after a failed attempt.
type Action string

// Actions a rule can decide.
const (
	RetryLater       Action = "retry_later"        // try again later in the same route
	ContactCustomer  Action = "contact_customer"   // call/notify the customer, wait for a reply, then Params.Then
	Reassign         Action = "reassign"           // hand the parcel to another courier nearby
	RelayPoint       Action = "relay_point"        // leave it at the nearest open relay point
	ReturnToMerchant Action = "return_to_merchant" // bring it back
	Cancel           Action = "cancel"             // cancel the order
)

// DispatcherReview is the decision for attempts the rules must not decide
// alone: unverified attempts and malformed situations. It is not a rule action.
const DispatcherReview Action = "dispatcher_review"

// Actions lists the rule actions in a fixed order.
func Actions() []Action {
	return []Action{RetryLater, ContactCustomer, Reassign, RelayPoint, ReturnToMerchant, Cancel}
}

// Final reports whether a ends the delivery attempts for the order.
func (a Action) Final() bool { return a == RelayPoint || a == ReturnToMerchant || a == Cancel }

func (a Action) valid() bool { return slices.Contains(Actions(), a) }

// Parcel sizes.
var parcelSizes = []string{"S", "M", "L"}

// Params are an action's parameters.
type Params struct {
	RetryAfterMinutes  int    `yaml:"retry_after_minutes,omitempty" json:"retry_after_minutes,omitempty"`   // retry_later: wait this long
	AfterNextStops     int    `yaml:"after_next_stops,omitempty" json:"after_next_stops,omitempty"`         // retry_later: or after this many other stops
	ReplyWindowMinutes int    `yaml:"reply_window_minutes,omitempty" json:"reply_window_minutes,omitempty"` // contact_customer: wait for a reply this long
	Then               Action `yaml:"then,omitempty" json:"then,omitempty"`                                 // contact_customer: the action when no reply came
	NotifyCustomer     bool   `yaml:"notify_customer,omitempty" json:"notify_customer,omitempty"`           // tell the customer (SMS/WhatsApp) what happens
}

// IntRange is an inclusive range; a zero bound is open. In YAML it is either
// a number (exact) or a mapping with min and/or max.
type IntRange struct {
	Min int `yaml:"min,omitempty"`
	Max int `yaml:"max,omitempty"`
}

// UnmarshalYAML accepts `3` or `{min: 2, max: 3}`.
func (r *IntRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v int
		if err := n.Decode(&v); err != nil {
			return err
		}
		*r = IntRange{Min: v, Max: v}
		return nil
	}
	m, err := decodeNumberMap[int](n, "min", "max")
	if err != nil {
		return err
	}
	*r = IntRange{Min: m["min"], Max: m["max"]}
	return nil
}

// FloatRange is a half-open range [Min, Max); a nil bound is open.
type FloatRange struct {
	Min *float64 `yaml:"min,omitempty"`
	Max *float64 `yaml:"max,omitempty"`
}

// UnmarshalYAML accepts a mapping with min and/or max.
func (r *FloatRange) UnmarshalYAML(n *yaml.Node) error {
	m, err := decodeNumberMap[float64](n, "min", "max")
	if err != nil {
		return err
	}
	*r = FloatRange{}
	if v, ok := m["min"]; ok {
		r.Min = &v
	}
	if v, ok := m["max"]; ok {
		r.Max = &v
	}
	return nil
}

// decodeNumberMap decodes a mapping, refusing keys other than allowed (the
// decoder's KnownFields does not reach custom unmarshalers).
func decodeNumberMap[T int | float64](n *yaml.Node, allowed ...string) (map[string]T, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping with %s", n.Line, strings.Join(allowed, "/"))
	}
	var m map[string]T
	if err := n.Decode(&m); err != nil {
		return nil, err
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("line %d: unknown key %q, want %s", n.Line, k, strings.Join(allowed, "/"))
		}
	}
	return m, nil
}

// Match is a rule's condition; every field set must hold, empty fields match
// anything.
type Match struct {
	Reasons        []Reason    `yaml:"reasons,omitempty"`
	Attempt        *IntRange   `yaml:"attempt,omitempty"`
	MinutesLeft    *FloatRange `yaml:"minutes_left,omitempty"` // minutes before the promise; negative once late
	MerchantPolicy []string    `yaml:"merchant_policy,omitempty"`
	COD            *bool       `yaml:"cod,omitempty"`
	ParcelSize     []string    `yaml:"parcel_size,omitempty"`
	// Verified: rules without it (or with true) apply to verified attempts
	// only; a rule must say `verified: false` to decide an unverified one.
	Verified *bool `yaml:"verified,omitempty"`
}

func (m Match) empty() bool {
	return len(m.Reasons) == 0 && m.Attempt == nil && m.MinutesLeft == nil && len(m.MerchantPolicy) == 0 &&
		m.COD == nil && len(m.ParcelSize) == 0 && m.Verified == nil
}

// Rule maps a Match to an action.
type Rule struct {
	Name   string `yaml:"name"`
	Match  Match  `yaml:"match,omitempty"`
	Action Action `yaml:"action"`
	Params `yaml:",inline"`
}

// Policy is a merchant policy: how many attempts, and what happens after.
type Policy struct {
	Name        string `yaml:"name"`
	MaxAttempts int    `yaml:"max_attempts,omitempty"` // 0: the rule set's MaxAttempts
	FinalAction Action `yaml:"final_action,omitempty"` // empty: the rule set's FinalAction
}

// RuleSet is a validated rules file. Rules are tried in order; the first
// match wins; the last rule is a catch-all.
type RuleSet struct {
	MaxAttempts int      `yaml:"max_attempts"`
	FinalAction Action   `yaml:"final_action"`
	Policies    []Policy `yaml:"policies,omitempty"`
	Rules       []Rule   `yaml:"rules"`
}

// MaxRulesSize bounds a rules file.
const MaxRulesSize = 1 << 20

// ErrInvalidRules wraps every rules-file error.
var ErrInvalidRules = errors.New("invalid failure rules")

// RuleError is one problem in a rules file. Index is 1-based; 0 means a
// top-level field.
type RuleError struct {
	Index int
	Name  string
	Field string
	Msg   string
}

func (e *RuleError) Error() string {
	if e.Index == 0 {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("rule %d %q: %s: %s", e.Index, e.Name, e.Field, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalidRules) hold.
func (e *RuleError) Unwrap() error { return ErrInvalidRules }

//go:embed default_rules.yaml
var defaultRules []byte

// Default returns the built-in rules (default_rules.yaml).
func Default() *RuleSet {
	rs, err := Parse(defaultRules)
	if err != nil {
		panic(fmt.Sprintf("failure: built-in default_rules.yaml is invalid: %v", err)) // a build defect, caught by tests
	}
	return rs
}

// Load reads and parses a rules file.
func Load(path string) (*RuleSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRulesSize+1))
	if err != nil {
		return nil, fmt.Errorf("load rules %s: %w", path, err)
	}
	rs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load rules %s: %w", path, err)
	}
	return rs, nil
}

// Parse decodes and validates a rules file. Unknown fields are errors. The
// returned error wraps ErrInvalidRules and joins one *RuleError per problem.
func Parse(data []byte) (rs *RuleSet, err error) {
	if len(data) > MaxRulesSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidRules, MaxRulesSize)
	}
	defer func() {
		if p := recover(); p != nil { // a YAML decoder bug must not take the process down
			rs, err = nil, fmt.Errorf("%w: yaml: %v", ErrInvalidRules, p)
		}
	}()
	if err := checkYAML(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRules, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var out RuleSet
	if err := dec.Decode(&out); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrInvalidRules)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidRules, err)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return &out, nil
}

// Validate checks the rule set; see Parse for the error.
func (rs *RuleSet) Validate() error {
	var errs []error
	top := func(field, format string, args ...any) {
		errs = append(errs, &RuleError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if rs.MaxAttempts < 1 {
		top("max_attempts", "must be >= 1, got %d", rs.MaxAttempts)
	}
	if !rs.FinalAction.Final() {
		top("final_action", "must be one of relay_point, return_to_merchant, cancel, got %q", rs.FinalAction)
	}
	policies := make(map[string]bool, len(rs.Policies))
	for i, p := range rs.Policies {
		field := fmt.Sprintf("policies[%d]", i)
		switch {
		case p.Name == "":
			top(field+".name", "must not be empty")
		case policies[p.Name]:
			top(field+".name", "duplicate policy %q", p.Name)
		}
		policies[p.Name] = true
		if p.MaxAttempts < 0 {
			top(field+".max_attempts", "must be >= 0, got %d", p.MaxAttempts)
		}
		if p.FinalAction != "" && !p.FinalAction.Final() {
			top(field+".final_action", "must be one of relay_point, return_to_merchant, cancel, got %q", p.FinalAction)
		}
	}
	if len(rs.Rules) == 0 {
		top("rules", "at least one rule (a catch-all) is required")
	}
	names := make(map[string]int, len(rs.Rules))
	catchAll := 0
	for i, r := range rs.Rules {
		bad := func(field, format string, args ...any) {
			errs = append(errs, &RuleError{Index: i + 1, Name: r.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		if r.Name == "" {
			bad("name", "must not be empty")
		} else if j, dup := names[r.Name]; dup {
			bad("name", "same name as rule %d", j)
		}
		names[r.Name] = i + 1
		if catchAll > 0 {
			bad("match", "unreachable: rule %d matches everything", catchAll)
		}
		if r.Match.empty() {
			catchAll = i + 1
		}
		errs = append(errs, r.validate(i+1, policies)...)
	}
	if n := len(rs.Rules); n > 0 && catchAll == 0 {
		errs = append(errs, &RuleError{Index: n, Name: rs.Rules[n-1].Name, Field: "match",
			Msg: "the last rule must be a catch-all (no match conditions)"})
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

func (r Rule) validate(index int, policies map[string]bool) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &RuleError{Index: index, Name: r.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	m := r.Match
	for _, reason := range m.Reasons {
		if _, err := ParseReason(string(reason)); err != nil {
			bad("match.reasons", "%v", err)
		}
	}
	if a := m.Attempt; a != nil {
		switch {
		case a.Min < 0 || a.Max < 0:
			bad("match.attempt", "bounds must be >= 1")
		case a.Min == 0 && a.Max == 0:
			bad("match.attempt", "set min and/or max (attempts count from 1)")
		case a.Max != 0 && a.Min > a.Max:
			bad("match.attempt", "min %d > max %d", a.Min, a.Max)
		}
	}
	if ml := m.MinutesLeft; ml != nil {
		switch {
		case ml.Min == nil && ml.Max == nil:
			bad("match.minutes_left", "set min and/or max")
		case ml.Min != nil && !finite(*ml.Min), ml.Max != nil && !finite(*ml.Max):
			bad("match.minutes_left", "bounds must be finite numbers")
		case ml.Min != nil && ml.Max != nil && *ml.Min >= *ml.Max:
			bad("match.minutes_left", "min %v must be < max %v", *ml.Min, *ml.Max)
		}
	}
	for _, p := range m.MerchantPolicy {
		if !policies[p] {
			bad("match.merchant_policy", "unknown policy %q (declare it under policies)", p)
		}
	}
	for _, s := range m.ParcelSize {
		if !slices.Contains(parcelSizes, s) {
			bad("match.parcel_size", "unknown size %q, want S, M or L", s)
		}
	}
	if !r.Action.valid() {
		bad("action", "unknown action %q, want one of %s", r.Action, actionList())
		return errs
	}
	p := r.Params
	if p.RetryAfterMinutes < 0 || p.AfterNextStops < 0 || p.ReplyWindowMinutes < 0 {
		bad("params", "retry_after_minutes, after_next_stops and reply_window_minutes must be >= 0")
	}
	retry := r.Action == RetryLater || r.Action == ContactCustomer && p.Then == RetryLater
	switch {
	case retry && (p.RetryAfterMinutes > 0) == (p.AfterNextStops > 0):
		bad("retry_after_minutes", "retry_later needs exactly one of retry_after_minutes and after_next_stops")
	case !retry && (p.RetryAfterMinutes > 0 || p.AfterNextStops > 0):
		bad("retry_after_minutes", "only for retry_later (or contact_customer then retry_later)")
	}
	if r.Action == ContactCustomer {
		if p.ReplyWindowMinutes <= 0 {
			bad("reply_window_minutes", "contact_customer needs a reply window > 0")
		}
		if !p.Then.valid() || p.Then == ContactCustomer {
			bad("then", "contact_customer needs then: one of retry_later, reassign, relay_point, return_to_merchant, cancel; got %q", p.Then)
		}
	} else {
		if p.ReplyWindowMinutes > 0 {
			bad("reply_window_minutes", "only for contact_customer")
		}
		if p.Then != "" {
			bad("then", "only for contact_customer")
		}
	}
	return errs
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func actionList() string {
	names := make([]string, 0, len(Actions()))
	for _, a := range Actions() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}
