package app

import (
	"context"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/shared/wire"
)

// jobs runs the periodic work until ctx ends.
func (m *Main) jobs(ctx context.Context) {
	defer close(m.jobsDone)
	var wg sync.WaitGroup
	defer wg.Wait()
	if m.Acks != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Acks.Run(ctx)
		}()
	}
	if m.relays != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			m.relays.sendPositions(ctx, m)
		}()
		go func() {
			defer wg.Done()
			m.relays.sendNotes(ctx, m)
		}()
	}
	if m.Webhooks != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Webhooks.Run(ctx)
		}()
	}
	if m.Hub != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.streamCouriers(ctx)
		}()
	}
	if m.Cash != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Cash.Run(ctx)
		}()
	}
	snap := time.NewTicker(snapshotEvery)
	stale := time.NewTicker(15 * time.Second)
	purge := time.NewTicker(time.Hour)
	compact := time.NewTicker(5 * time.Minute)
	defer compact.Stop()
	etaSave := time.NewTicker(5 * time.Minute)
	defer etaSave.Stop()
	defer snap.Stop()
	defer stale.Stop()
	defer purge.Stop()
	lastSnap := time.Time{}
	m.purge(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-snap.C:
			now := time.Now()
			if err := m.snapshot(ctx, lastSnap); err != nil {
				m.Log.Warn("courier state snapshot failed", "err", err)
				continue
			}
			lastSnap = now
		case now := <-stale.C:
			if gone := m.Index.Expire(now, m.Config.StaleAfter); len(gone) > 0 {
				m.Log.Info("couriers marked offline after silence", "count", len(gone))
			}
			m.Density.Prune(now)
		case <-purge.C:
			m.purge(ctx)
		case <-compact.C:
			m.compactHistory(ctx)
		case <-etaSave.C:
			if err := m.saveETA(ctx); err != nil {
				m.Log.Warn("ETA model not saved", "err", err)
			}
		}
	}
}

// snapshotEvery is how often courier_state is refreshed: what a restart
// loses of the live index is at most this old (then the next fixes fix it).
const snapshotEvery = 30 * time.Second

// snapshotChunk bounds one bulk write: FerretDB's PostgreSQL handler holds a
// pool connection per statement of an update command, so a large bulk
// write exhausts its pool and deadlocks (seen at 50 statements).
const snapshotChunk = 20

// snapshot saves the couriers seen since `since` to courier_state: throttled
// (every snapshotEvery, only what changed), never on the ingest path.
func (m *Main) snapshot(ctx context.Context, since time.Time) error {
	var states []mongostore.CourierState
	m.Index.Each(func(c livemap.Courier) bool {
		if c.HasFix && c.LastSeen.After(since) {
			states = append(states, mongostore.CourierState{CourierID: c.ID, Epoch: c.Fix.Epoch, Seq: c.Fix.Seq, Lat: c.Fix.Lat, Lng: c.Fix.Lng,
				AccuracyM: c.Fix.Accuracy, SpeedMPS: c.Fix.Speed, Heading: c.Fix.Heading, Battery: c.Fix.Battery,
				T: c.Fix.Time, SeenAt: c.LastSeen, Online: c.Online})
		}
		return true
	})
	for len(states) > 0 {
		n := min(len(states), snapshotChunk)
		if err := m.Store.SaveCourierStates(ctx, states[:n]); err != nil {
			return err
		}
		states = states[n:]
	}
	return nil
}

// purge enforces the retention of position history (the TTL index does it
// too where the server supports one) and of customer personal data.
func (m *Main) purge(ctx context.Context) {
	cutoff := time.Now().Add(-time.Duration(m.Config.PositionsRetentionDays) * 24 * time.Hour)
	n, err := m.Store.PurgePositions(ctx, cutoff)
	if err != nil {
		m.Log.Warn("position retention purge failed", "err", err)
	} else if n > 0 {
		m.Log.Info("position history purged", "deleted", n, "older_than", cutoff)
	}
	if m.purgeHook != nil {
		m.purgeHook(ctx)
	}
}

// compactHistory merges the small history buckets (a courier at one fix a
// second gets one per flush) once their fixes are ten minutes old, when late
// re-sends have become rare; at most 20,000 buckets a run.
func (m *Main) compactHistory(ctx context.Context) {
	n, err := m.Store.CompactPositions(ctx, time.Now().Add(-10*time.Minute), 20_000)
	if err != nil {
		m.Log.Warn("position history compaction failed", "err", err)
	} else if n > 0 {
		m.Log.Debug("position history compacted", "buckets_merged", n)
	}
}

// onFix is called by ingest for every fix that moved a courier.
func (m *Main) onFix(courierID string, prev wire.Fix, hadPrev bool, fix wire.Fix) {
	for _, fn := range m.fixHooks {
		fn(courierID, prev, hadPrev, fix)
	}
}

func (m *Main) setShiftHTTP(c *fiber.Ctx, courierID string, on bool) error {
	return m.SetShift(c.UserContext(), courierID, on)
}
