package delivery

import (
	"context"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/core"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// The handover code is six digits: unbounded guessing finds it in minutes
// (audit: 1,000 wrong codes at ~3,500/s, then the right one accepted, no
// trace). So wrong codes are bounded per order and courier, and rated per
// courier across orders:
//
//   - after MaxHandoverFailures wrong codes on an order, that courier can no
//     longer deliver it (ErrHandoverLocked) until a dispatcher unlocks it;
//     the lockout is an order event and an audit entry, and reaches the
//     merchant (webhook order.handover_locked) and dispatchers (stream);
//   - a courier gets CourierCodeFailures wrong codes per CourierCodeWindow
//     over all its orders, then ErrHandoverThrottled until the window passes.
//
// Every wrong code is an order event (handover_code_rejected).
const (
	MaxHandoverFailures = 5
	CourierCodeFailures = 8
	CourierCodeWindow   = 15 * time.Minute
)

// Event kinds recorded beside the transitions (the order does not move).
const (
	KindHandoverRejected order.Kind = "handover_code_rejected"
	KindHandoverLocked   order.Kind = "handover_locked"
	KindHandoverUnlocked order.Kind = "handover_unlocked"
)

// Errors of the handover checks.
var (
	ErrHandoverLocked    = errors.New("too many wrong handover codes: delivery locked for this courier until a dispatcher unlocks it")
	ErrHandoverThrottled = errors.New("too many wrong handover codes from this courier")
)

// codeThrottle counts a courier's wrong codes in a sliding window.
type codeThrottle struct {
	mu   sync.Mutex
	seen map[string][]time.Time
}

// wait returns how long the courier must wait before trying a code (0: now).
func (t *codeThrottle) wait(courier string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts := t.prune(courier, now)
	if len(ts) < CourierCodeFailures {
		return 0
	}
	return ts[0].Add(CourierCodeWindow).Sub(now)
}

func (t *codeThrottle) fail(courier string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string][]time.Time{}
	}
	t.seen[courier] = append(t.prune(courier, now), now)
}

func (t *codeThrottle) prune(courier string, now time.Time) []time.Time {
	ts := t.seen[courier]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= CourierCodeWindow {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(t.seen, courier)
	} else {
		t.seen[courier] = ts
	}
	return ts
}

// ThrottledError carries how long a throttled courier must wait.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string { return ErrHandoverThrottled.Error() }
func (e *ThrottledError) Unwrap() error { return ErrHandoverThrottled }

// claimHandover refuses a code from a throttled courier or one locked out
// of the order, and otherwise claims the attempt before the code is checked
// (see mongostore.ClaimHandoverAttempt): the attempt id and its number.
func (s *Service) claimHandover(ctx context.Context, id, courierID string) (string, int, error) {
	if w := s.codes.wait(courierID, s.now()); w > 0 {
		return "", 0, &ThrottledError{Wait: w}
	}
	aid, n, err := s.d.Store.ClaimHandoverAttempt(ctx, id, courierID, s.now().UTC())
	if err != nil {
		return "", 0, err
	}
	if n > MaxHandoverFailures {
		return aid, n, ErrHandoverLocked
	}
	return aid, n, nil
}

// dropHandover forgets an attempt that did not fail.
func (s *Service) dropHandover(ctx context.Context, aid string) {
	if err := s.d.Store.DropHandoverAttempt(context.WithoutCancel(ctx), aid); err != nil {
		s.d.Log.Warn("handover attempt not dropped", "err", err)
	}
}

// handoverFailed records the n-th wrong code and returns the error for the
// courier: ErrHandoverCode with the attempts left, or ErrHandoverLocked when
// this one used the last.
func (s *Service) handoverFailed(ctx context.Context, cur *mongostore.StoredOrder, courier order.Actor, n int) error {
	now := s.now().UTC()
	s.codes.fail(courier.ID, now)
	s.note(ctx, cur.ID, KindHandoverRejected, courier, fmt.Sprintf("wrong handover code %d of %d", n, MaxHandoverFailures))
	if n < MaxHandoverFailures {
		return fmt.Errorf("%w: %d attempts left", order.ErrHandoverCode, MaxHandoverFailures-n)
	}
	why := fmt.Sprintf("%d wrong handover codes from courier %s", n, courier.ID)
	s.note(ctx, cur.ID, KindHandoverLocked, courier, why)
	if err := s.d.Store.AppendAudit(ctx, mongostore.AuditEntry{At: now, ActorID: courier.ID, ActorRole: string(courier.Role),
		Action: string(KindHandoverLocked), Subject: "order:" + cur.ID, Detail: why}); err != nil {
		s.d.Log.Error("audit append failed", "action", KindHandoverLocked, "err", err)
	}
	s.hub.Publish("order.handover_locked", map[string]any{"order_id": cur.ID, "courier_id": courier.ID, "failures": n, "at": now})
	if s.webhooks != nil {
		s.webhooks.Enqueue(context.WithoutCancel(ctx), cur.MerchantID, "order.handover_locked", map[string]any{"order_id": cur.ID,
			"status": cur.Status, "courier_id": courier.ID, "failures": n, "at": now})
	}
	s.d.Log.Warn("handover locked", "order_id", cur.ID, "courier_id", courier.ID, "failures", n)
	return ErrHandoverLocked
}

// UnlockHandover lets the couriers locked out of an order try codes again;
// it returns how many couriers had wrong codes on it.
func (s *Service) UnlockHandover(ctx context.Context, actor order.Actor, id string) (*mongostore.StoredOrder, int, error) {
	cur, err := s.load(ctx, id, true)
	if err != nil {
		return nil, 0, err
	}
	if cur.Status.Terminal() {
		return nil, 0, fmt.Errorf("%w: order is %s", order.ErrInvalidTransition, cur.Status)
	}
	n, err := s.d.Store.ResetHandover(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	s.note(ctx, id, KindHandoverUnlocked, actor, fmt.Sprintf("wrong-code counts of %d courier(s) cleared", n))
	s.hub.Publish("order.handover_unlocked", map[string]any{"order_id": id, "by": actor.ID})
	return cur, n, nil
}

// note records an order event that is not a transition (the status stays;
// the event takes a version like every other, see update).
func (s *Service) note(ctx context.Context, id string, kind order.Kind, actor order.Actor, why string) {
	if _, _, err := s.run(context.WithoutCancel(ctx), id, core.Note{Kind: kind, Actor: actor, Why: why}, false); err != nil {
		s.d.Log.Error("order event not recorded", "order_id", id, "action", kind, "err", err)
	}
}
