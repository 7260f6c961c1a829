package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// probeOptions configure the publish→queryable latency probes.
type probeOptions struct {
	Every   time.Duration // between a probe's fixes; at least 1 s (updated_at has whole seconds)
	Poll    time.Duration // between two queries while waiting for a fix
	Timeout time.Duration // a fix not visible after this counts as unseen
}

// latencies are the measured publish→queryable delays.
type latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	unseen  int
}

func (l *latencies) add(d time.Duration, seen bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !seen {
		l.unseen++
		return
	}
	l.samples = append(l.samples, d)
}

// quantile returns the nearest-rank q-quantile (0 < q ≤ 1) of ds, or 0 for
// no sample. ds is sorted in place.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// visible reports whether a near-query answer shows courier id at fix f
// or later. The API gives the live fix's device time in whole seconds;
// probes send at most one fix per second, so a time past f's second means
// a later fix of the same probe.
func visible(cs []nearCourier, id string, f wire.Fix) bool {
	for _, c := range cs {
		if c.ID != id {
			continue
		}
		if math.Abs(c.Lat-f.Lat) < 2e-6 && math.Abs(c.Lng-f.Lng) < 2e-6 {
			return true
		}
		if t, err := time.Parse(time.RFC3339, c.UpdatedAt); err == nil && t.After(f.Time.Truncate(time.Second)) {
			return true
		}
	}
	return false
}

// runProbe publishes one fix every o.Every for one courier and times how
// long each takes to show in GET /v1/couriers?near= (the live index), until
// ctx ends. Its acknowledged fixes are returned for the zero-loss check.
func runProbe(ctx context.Context, a *api, token, broker, prefix string, cr Credential, seqBase uint64, o probeOptions,
	lat *latencies, log *slog.Logger) (sent, error) {
	c, err := connect(ctx, broker, cr.ClientID, cr.Username, cr.Password, log)
	if err != nil {
		return sent{}, fmt.Errorf("probe %s: %w", cr.CourierID, err)
	}
	defer c.Disconnect(250)
	h := fnv.New64a()
	h.Write([]byte(cr.CourierID))
	r := newRider(h.Sum64(), casablanca, seqBase)
	t := topic.Courier(prefix, cr.CourierID, topic.Pos)
	s := sent{CourierID: cr.CourierID, FirstSeq: seqBase + 1}
	tick := time.NewTicker(o.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return s, nil
		case <-tick.C:
		}
		f := r.next(time.Now())
		payload, err := wire.EncodeBatch(nil, []wire.Fix{f})
		if err != nil {
			return s, fmt.Errorf("probe %s: encode: %w", cr.CourierID, err)
		}
		pub := time.Now()
		tok := c.Publish(t, 1, false, payload)
		seen, at := waitVisible(ctx, a, token, cr.CourierID, f, pub, o)
		if tok.Wait(); tok.Error() != nil {
			s.Failed++
			continue
		}
		s.Acked++
		s.Messages++
		s.Bytes += len(payload)
		s.MaxSeq = f.Seq
		s.Ranges = append(s.Ranges, [2]uint64{f.Seq, f.Seq})
		if ctx.Err() == nil || seen {
			lat.add(at.Sub(pub), seen)
		}
	}
}

func waitVisible(ctx context.Context, a *api, token, id string, f wire.Fix, pub time.Time, o probeOptions) (bool, time.Time) {
	deadline := pub.Add(o.Timeout)
	for {
		cs, err := a.near(ctx, token, f.Lat, f.Lng, 300, 50)
		now := time.Now()
		if err == nil && visible(cs, id, f) {
			return true, now
		}
		if now.After(deadline) || ctx.Err() != nil {
			return false, now
		}
		time.Sleep(o.Poll)
	}
}
