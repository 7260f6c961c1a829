package delivery

import (
	"context"
	"errors"
	"hash/fnv"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// change applies one action to an order with compare-and-set in the store:
// load (from the active cache or the store), apply, write if the version is
// still the one we read, record the event, update caches, notify. mutate,
// when given, edits store-only fields (relay, hand-over point) in the same write.
// On a lost race it reloads and tries again once; a second loss is a conflict.
func (s *Service) change(ctx context.Context, id string, a order.Action, actor order.Actor, mutate func(*mongostore.StoredOrder)) (*mongostore.StoredOrder, order.Event, error) {
	defer s.lockOrder(id)()
	for try := 0; ; try++ {
		cur, err := s.load(ctx, id, try > 0)
		if err != nil {
			return nil, order.Event{}, err
		}
		next := mongostore.StoredOrder{Order: cur.Order.Clone(), RelayID: cur.RelayID, OrigPickup: cur.OrigPickup}
		ev, err := order.Apply(next.Order, a, actor)
		if err != nil {
			return nil, order.Event{}, err
		}
		if mutate != nil {
			mutate(&next)
		}
		err = s.d.Store.UpdateOrder(ctx, next, cur.Version)
		if errors.Is(err, order.ErrConflict) && try == 0 {
			continue
		}
		if err != nil {
			return nil, order.Event{}, err
		}
		if err := s.d.Store.AppendEvent(ctx, ev); err != nil {
			s.d.Log.Error("order event not recorded", "order_id", id, "err", err)
		}
		s.remember(&next)
		s.emit(&next, ev)
		return &next, ev, nil
	}
}

// load returns the order from the active cache, or the store when fresh
// is asked or the order is not active.
func (s *Service) load(ctx context.Context, id string, fresh bool) (*mongostore.StoredOrder, error) {
	if !fresh {
		s.mu.Lock()
		o, ok := s.active[id]
		s.mu.Unlock()
		if ok {
			return o, nil
		}
	}
	o, err := s.d.Store.Order(ctx, id)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// remember updates the active cache and the density map.
func (s *Service) remember(o *mongostore.StoredOrder) {
	s.mu.Lock()
	_, was := s.active[o.ID]
	if o.Status.Terminal() {
		delete(s.active, o.ID)
		delete(s.retryAt, o.ID)
	} else {
		s.active[o.ID] = o
	}
	s.mu.Unlock()
	if was && o.Status.Terminal() {
		s.d.Density.OrderClosed(o.ID)
	}
}

// emit tells dispatchers (event stream) and the merchant (webhook).
func (s *Service) emit(o *mongostore.StoredOrder, ev order.Event) {
	s.hub.Publish("order."+string(ev.To), map[string]any{"order_id": o.ID, "from": ev.From, "to": ev.To, "action": ev.Action,
		"actor": ev.Actor, "courier_id": o.CourierID, "at": ev.At, "reason": ev.Reason})
	if s.webhooks != nil {
		s.webhooks.Enqueue(context.Background(), o.MerchantID, "order."+string(ev.To), webhookOrder(o, ev))
	}
}

func webhookOrder(o *mongostore.StoredOrder, ev order.Event) map[string]any {
	m := map[string]any{"order_id": o.ID, "status": o.Status, "previous_status": ev.From, "action": ev.Action,
		"at": ev.At, "promise_by": o.PromiseBy, "courier_id": o.CourierID, "reason": ev.Reason}
	if n := len(o.Attempts); n > 0 {
		m["attempts"] = o.Attempts
	}
	return m
}

// lockOrder serialises writes to one order within this process and returns
// the unlock. The store's compare-and-set (version in the filter) keeps
// replicas apart on MongoDB; FerretDB v1 does not apply a filtered update
// atomically (measured: several concurrent writers at one version all
// succeed), and embedded FerretDB serves a single process, so this lock is
// what makes "exactly one wins" hold there.
func (s *Service) lockOrder(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	m := &s.orderLocks[h.Sum32()%uint32(len(s.orderLocks))]
	m.Lock()
	return m.Unlock
}
