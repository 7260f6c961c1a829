package app

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/livemap"
)

// courierNames keeps couriers' display names for the dispatcher's views
// (the live index holds no personal data beyond positions).
// A plain map under a read-write lock: the near= answer reads a name per
// courier, and a map lookup is one or two cache misses where sync.Map's
// trie was about eight at 50,000 couriers. Each entry is one string, the
// id then the name, and its key is the id part of it: the key comparison
// brings the name's bytes into the cache too (a miss less per name).
type courierNames struct {
	mu sync.RWMutex
	m  map[string]string // id -> id + name
}

func (n *courierNames) set(id, name string) {
	e := id + name
	n.mu.Lock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	delete(n.m, id) // so that the key is the new entry's own id
	n.m[e[:len(id)]] = e
	n.mu.Unlock()
}

// getAll sets names[i] to the name of ids[i], under one read lock.
func (n *courierNames) getAll(ids, names []string) {
	n.mu.RLock()
	for i, id := range ids {
		names[i] = ""
		if e, ok := n.m[id]; ok {
			names[i] = e[len(id):]
		}
	}
	n.mu.RUnlock()
}

func (n *courierNames) get(id string) string {
	n.mu.RLock()
	e, ok := n.m[id]
	n.mu.RUnlock()
	if !ok {
		return ""
	}
	return e[len(id):]
}

// liveEvery is how often the dispatcher streams get the couriers that moved
// or changed: one batched event instead of one per fix.
const liveEvery = time.Second

// liveCourier is the last state sent for one courier.
type liveCourier struct {
	lat, lng     float64
	status, load int
	online       bool
}

// streamCouriers publishes "couriers.updated" events while someone listens:
// every courier whose position (to ~1 m), status, load or presence changed
// since the last event, as compact rows [id, lat, lng, status, load, online,
// capacity]. A new listener gets everyone in its first second.
func (m *Main) streamCouriers(ctx context.Context) {
	t := time.NewTicker(liveEvery)
	defer t.Stop()
	sent := map[string]liveCourier{}
	listeners := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := m.Hub.Subscribers()
		if n == 0 {
			clear(sent)
			listeners = 0
			continue
		}
		full := n > listeners // someone new: send everyone
		listeners = n
		var rows [][]any
		m.Index.Each(func(c livemap.Courier) bool {
			if !c.HasFix {
				return true
			}
			lc := liveCourier{lat: math.Round(c.Fix.Lat*1e5) / 1e5, lng: math.Round(c.Fix.Lng*1e5) / 1e5, status: int(c.Status), load: c.Load, online: c.Online}
			if prev, ok := sent[c.ID]; ok && prev == lc && !full {
				return true
			}
			sent[c.ID] = lc
			rows = append(rows, []any{c.ID, lc.lat, lc.lng, c.Status.String(), c.Load, c.Online, c.Capacity})
			return true
		})
		if len(rows) > 0 {
			m.Hub.Publish("couriers.updated", map[string]any{"couriers": rows, "full": full})
		}
	}
}
