// Package ingest turns device messages (our binary position batches, state
// messages, OwnTracks JSON) into live-index updates and position history.
//
// The courier always comes from the topic, which the broker binds to the
// device's credentials, never from the payload. Every refusal is counted by
// reason and changes nothing; the rest of a batch is still processed.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Index is what ingest needs of the live index.
type Index interface {
	Update(id string, f wire.Fix, recv time.Time) (livemap.UpdateResult, error)
	UpdateBatch(dst []livemap.MoveResult, moves []livemap.Move, recv time.Time) []livemap.MoveResult
	Get(id string) (livemap.Courier, bool)
	SetOnline(id string, online bool, at time.Time)
}

var _ Index = (*livemap.Index)(nil)

// Policy holds the configurable validation limits.
type Policy struct {
	MaxAge       time.Duration // device time older than now-MaxAge is refused
	MaxFuture    time.Duration // device time newer than now+MaxFuture is refused
	MaxAccuracyM float64
	MaxSpeedMPS  float64 // between consecutive fixes of one courier
	// ReanchorFixes consecutive fixes that agree with each other but not
	// with the live position move the courier there (a restart elsewhere, or
	// an outlier that had been accepted); so do two or more spanning
	// ReanchorAfter. Zero: 3 fixes, 30 s.
	ReanchorFixes int
	ReanchorAfter time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.ReanchorFixes <= 0 {
		p.ReanchorFixes = 3
	}
	if p.ReanchorAfter <= 0 {
		p.ReanchorAfter = 30 * time.Second
	}
	return p
}

// Rejection reasons (the label of tawsil_ingest_rejections_total).
const (
	RejectTopic     = "topic"
	RejectMalformed = "malformed"
	RejectRetained  = "retained"
	RejectOversize  = "oversize"
	RejectRange     = "out_of_range"
	RejectNullIsl   = "null_island"
	RejectNaN       = "nan"
	RejectTooOld    = "too_old"
	RejectFuture    = "future"
	RejectAccuracy  = "accuracy"
	RejectSpeed     = "impossible_speed"
	RejectOffShift  = "off_shift"
)

// FixObserver learns of every fix that moved a courier's live position
// (ETA learning, at-risk prediction). It must not block.
type FixObserver func(courierID string, prev wire.Fix, hadPrev bool, fix wire.Fix)

// Pipeline processes device messages.
type Pipeline struct {
	prefix  string
	policy  Policy
	index   Index
	history *History
	log     *slog.Logger
	m       *metrics.Metrics
	now     func() time.Time
	onFix   FixObserver
	acks    *Acks

	// One courier's fixes are checked and applied under its stripe, so the
	// plausibility state and the live position move together even when the
	// agent's topic and OwnTracks are handled concurrently.
	stripes [64]stripe

	refusals refusalLog

	// The counters of every fix and message, resolved once (a label
	// lookup per fix was a few percent of ingest's CPU).
	accepted, outOfOrder prometheus.Counter
	posMessages          prometheus.Counter
}

// refusalLog writes one line per refusal reason at most every refusalEvery,
// with how many were refused since the last line: every refusal is counted
// in the metrics, and the log says what happens without a device being able
// to grow it at will.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

const refusalEvery = 10 * time.Second

func (p *Pipeline) logRefusal(reason string, n int) {
	if p.log == nil {
		return
	}
	now := p.now()
	r := &p.refusals
	r.mu.Lock()
	if r.last == nil {
		r.last, r.held = map[string]time.Time{}, map[string]int{}
	}
	r.held[reason] += n
	if t, ok := r.last[reason]; ok && now.Sub(t) < refusalEvery {
		r.mu.Unlock()
		return
	}
	count := r.held[reason]
	r.last[reason], r.held[reason] = now, 0
	r.mu.Unlock()
	p.log.Info("fixes refused", "reason", reason, "count", count)
}

// New builds a pipeline. onFix may be nil.
func New(prefix string, p Policy, index Index, history *History, onFix FixObserver, log *slog.Logger, m *metrics.Metrics) *Pipeline {
	return &Pipeline{prefix: prefix, policy: p.withDefaults(), index: index, history: history, onFix: onFix, log: log, m: m,
		now:      time.Now,
		accepted: m.IngestFixes.WithLabelValues("accepted"), outOfOrder: m.IngestFixes.WithLabelValues("out_of_order"),
		posMessages: m.IngestMessages.WithLabelValues(string(topic.Pos))}
}

// SetAcks makes the pipeline acknowledge durably handled fixes of agent
// payloads (epoch set) to their devices. Call before messages flow.
func (p *Pipeline) SetAcks(a *Acks) { p.acks = a }

var _ mqttack.Handler = (*Pipeline)(nil)

func (p *Pipeline) reject(reason string, n int) {
	p.m.IngestRejections.WithLabelValues(reason).Add(float64(n))
	p.logRefusal(reason, n)
}

// HandleMQTT processes one message. It returns nil once what must be durable
// is durable, mqttack.ErrDrop for a refused message (acknowledge, discard), or
// another error when the message must not be acknowledged yet.
func (p *Pipeline) HandleMQTT(ctx context.Context, t string, payload []byte, retained bool) error {
	wait, err := p.Stage(ctx, t, payload, retained)
	if err != nil {
		return err
	}
	return wait(ctx)
}

var (
	_ mqttack.StagedHandler    = (*Pipeline)(nil)
	_ mqttack.NotifyingHandler = (*Pipeline)(nil)
)

// Stage validates a message, updates the live index and queues its history
// write; wait blocks until that write is durable.
func (p *Pipeline) Stage(ctx context.Context, t string, payload []byte, retained bool) (func(context.Context) error, error) {
	return waitFor(func(done func(error)) error { return p.stage(ctx, t, payload, retained, false, done) })
}

// StageNotify is Stage with a callback: done is called once the write is
// durable (see mqttack.NotifyingHandler).
func (p *Pipeline) StageNotify(ctx context.Context, t string, payload []byte, retained bool, done func(error)) error {
	return p.stage(ctx, t, payload, retained, false, done)
}

// waitFor runs a staging with a callback and returns a wait for it.
func waitFor(stage func(done func(error)) error) (func(context.Context) error, error) {
	ch := make(chan error, 1)
	if err := stage(func(err error) { ch <- err }); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		select {
		case err := <-ch:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// Live is the pipeline without history: it validates and updates the live
// index only, and a message is safe once applied. With several replicas each
// one receives every position on a plain subscription for its own full live
// index (Live) and its share on the shared subscription (the Pipeline
// itself), which stores and acknowledges; the live index takes a fix it
// already has as a duplicate.
type Live struct{ p *Pipeline }

// LiveOnly returns the live-index-only view of p.
func (p *Pipeline) LiveOnly() Live { return Live{p} }

var (
	_ mqttack.StagedHandler    = Live{}
	_ mqttack.NotifyingHandler = Live{}
)

// HandleMQTT applies a message to the live index.
func (l Live) HandleMQTT(ctx context.Context, t string, payload []byte, retained bool) error {
	return l.p.stage(ctx, t, payload, retained, true, func(error) {})
}

// Stage applies a message to the live index; wait returns at once.
func (l Live) Stage(ctx context.Context, t string, payload []byte, retained bool) (func(context.Context) error, error) {
	if err := l.p.stage(ctx, t, payload, retained, true, func(error) {}); err != nil {
		return nil, err
	}
	return noWait, nil
}

func noWait(context.Context) error { return nil }

// HandleFixes applies fixes that another replica took over HTTP and
// stored (HandleFixes there) to the live index: the same checks and
// shift rule as a position message, no history, no acknowledgement.
// courier comes from the relay's topic, which only replicas may publish.
func (l Live) HandleFixes(ctx context.Context, courier string, fixes []wire.Fix) error {
	return l.p.fixes(ctx, courier, fixes, true, nil, func(error) {})
}

// StageNotify applies a message to the live index and calls done at once.
func (l Live) StageNotify(ctx context.Context, t string, payload []byte, retained bool, done func(error)) error {
	return l.p.stage(ctx, t, payload, retained, true, done)
}

// stage handles one message; when it returns nil, done is called exactly
// once: at once for what needs no write, else once the write is durable.
func (p *Pipeline) stage(ctx context.Context, t string, payload []byte, retained, live bool, done func(error)) error {
	courier, kind, ok := topic.Parse(p.prefix, t)
	if !ok {
		p.reject(RejectTopic, 1)
		return mqttack.ErrDrop
	}
	if kind == topic.Pos {
		p.posMessages.Inc()
	} else {
		p.m.IngestMessages.WithLabelValues(string(kind)).Inc()
	}
	switch kind {
	case topic.Pos:
		if retained {
			p.reject(RejectRetained, 1)
			return mqttack.ErrDrop
		}
		buf := fixBufs.Get().(*[]wire.Fix)
		defer fixBufs.Put(buf) // nothing keeps the decoded slice past the message (p.fixes copies what it keeps)
		fixes, err := wire.DecodeBatchTo(*buf, payload)
		if err != nil {
			p.reject(decodeReason(err), 1)
			return mqttack.ErrDrop
		}
		*buf = fixes
		// Storage acknowledgements follow the durable write itself, not the
		// broker acknowledgement (which, during a store outage, the memory
		// queue gives early).
		var onStored func()
		if !live && fixes[0].Epoch != wire.EpochNone && p.acks != nil { // version-1 agents do not listen for them
			ep, seqs, compact := fixes[0].Epoch, seqsOf(fixes), topic.IsCompact(p.prefix, t)
			onStored = func() { p.acks.Add(courier, compact, ep, seqs) }
		}
		err = p.fixes(ctx, courier, fixes, live, onStored, done)
		if errors.Is(err, mqttack.ErrDrop) && onStored != nil {
			onStored() // every fix refused: handled for good
		}
		return err
	case topic.OwnTracks:
		if retained {
			p.reject(RejectRetained, 1)
			return mqttack.ErrDrop
		}
		fix, err := wire.DecodeOwnTracks(payload)
		if errors.Is(err, wire.ErrNotLocation) {
			p.ownTracksOther(courier, payload)
			return mqttack.ErrDrop
		}
		if err != nil {
			p.reject(decodeReason(err), 1)
			return mqttack.ErrDrop
		}
		return p.fixes(ctx, courier, []wire.Fix{fix}, live, nil, done)
	case topic.State:
		s, err := wire.DecodeState(payload)
		if err != nil {
			p.reject(decodeReason(err), 1)
			return mqttack.ErrDrop
		}
		// Only a courier the index knows: a state message (a Last Will
		// when an erasure disconnects the device) must not bring back a
		// courier just removed, nor make one for an id nobody holds.
		if _, known := p.index.Get(courier); known {
			p.index.SetOnline(courier, s.Online, p.now())
		}
		done(nil)
		return nil
	default: // tasks/config are ours; a device may not publish them (the ACL refuses it too)
		p.reject(RejectTopic, 1)
		return mqttack.ErrDrop
	}
}

// Ignore counts a device message that was accepted and set aside
// (tawsil_ingest_ignored_total{reason}); the broker reports its own there.
func (p *Pipeline) Ignore(reason string) {
	p.m.IngestIgnored.WithLabelValues(reason).Inc()
}

// ownTracksOther handles OwnTracks messages that are not locations: the app's
// Last Will (lwt) marks the courier offline, the rest is counted and ignored.
func (p *Pipeline) ownTracksOther(courier string, payload []byte) {
	typ := wire.OwnTracksType(payload)
	if typ == "" {
		typ = "other"
	}
	p.Ignore("owntracks_" + typ)
	if typ == wire.OwnTracksLWT {
		if _, known := p.index.Get(courier); known {
			p.index.SetOnline(courier, false, p.now())
		}
	}
}

// HandleFixes validates, indexes and stores fixes from a transport that is
// not MQTT (OwnTracks HTTP mode, Traccar Client): the same checks, shift
// rule, dedupe and history as a pos message. Its errors mean what
// HandleMQTT's do. courier must come from the device's credentials.
func (p *Pipeline) HandleFixes(ctx context.Context, courier string, fixes []wire.Fix) error {
	wait, err := waitFor(func(done func(error)) error { return p.fixes(ctx, courier, fixes, false, nil, done) })
	if err != nil {
		return err
	}
	return wait(ctx)
}

// HandleOwnTracks processes an OwnTracks message that came over HTTP (the
// apps' HTTP mode) exactly as if it had been published on
// owntracks/{courier}/{device}. device must pass topic.ValidDevice.
func (p *Pipeline) HandleOwnTracks(ctx context.Context, courier, device string, payload []byte) error {
	return p.HandleMQTT(ctx, topic.OwnTracksTopic(courier, device), payload, false)
}

func decodeReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return RejectOversize
	case errors.Is(err, wire.ErrLatRange), errors.Is(err, wire.ErrLngRange):
		return RejectRange
	case errors.Is(err, wire.ErrNullIsland):
		return RejectNullIsl
	case errors.Is(err, wire.ErrNaN):
		return RejectNaN
	}
	return RejectMalformed
}

// fixBufs holds buffers to decode position messages into: a message's
// fixes are copied into the live index's moves and the history's positions,
// and the decoded slice itself was an allocation per message.
var fixBufs = sync.Pool{New: func() any { return new([]wire.Fix) }}

func seqsOf(fixes []wire.Fix) []uint64 {
	s := make([]uint64, len(fixes))
	for i, f := range fixes {
		s[i] = f.Seq
	}
	return s
}

// stripe is a lock over some couriers, with their plausibility state and
// the scratch space of the message being handled under it (reused: no
// allocation per message). The state is the stripe's, not the pipeline's
// under a lock of its own: a message takes one lock, its courier's.
type stripe struct {
	sync.Mutex
	judged map[string]*judgedFixes // courier → its verdicts and suspects
	moves  []livemap.Move
	at     []int
	res    []livemap.MoveResult
}

func (p *Pipeline) stripe(courier string) *stripe {
	h := fnv.New32a()
	h.Write([]byte(courier))
	return &p.stripes[h.Sum32()%uint32(len(p.stripes))]
}

// fixes validates, indexes and stores one message's fixes; onStored, when
// not nil, runs once they are written (not merely queued).
//
// Plausibility: a fix newer than the live one must be reachable from it at
// MaxSpeedMPS (device times clamped to now, so a fix dated in the future
// buys no distance). A fix that is not is held as a suspect; suspects that
// agree with each other re-anchor the courier once there are ReanchorFixes
// of them (or two spanning ReanchorAfter), and are then accepted and stored;
// suspects followed by a fix that agrees with the live position were
// outliers. So one outlier never locks a courier out, whether it was
// refused or accepted. Every suspect is counted as impossible_speed when it
// is held back (as a refusal always was); those a re-anchoring accepts
// later are counted again as reanchored.
//
// A fix that is not newer than the live one (a re-send, a late message, a
// lower sequence number) skips the speed check; it is stored as Late, as
// are re-anchored fixes: history, never evidence.
func (p *Pipeline) fixes(ctx context.Context, courier string, fixes []wire.Fix, live bool, onStored func(), done func(error)) error {
	now := p.now()
	mu := p.stripe(courier)
	mu.Lock()
	c, known := p.index.Get(courier)
	if !known || !c.OnShift {
		mu.Unlock()
		// Off shift: where a courier is outside work is none of our business.
		p.reject(RejectOffShift, len(fixes))
		return mqttack.ErrDrop
	}
	prev, hasPrev := c.Fix, c.HasFix
	keep := make([]mongostore.Position, 0, len(fixes))
	// The fixes for the index are applied together after the loop, in one
	// UpdateBatch (one lookup and the memory misses of one courier, not one
	// per fix). The loop judges each fix against prev, the live fix as the
	// index will have it by then: the stripe keeps every other writer of
	// this courier's fix out, so the index applies exactly the fixes that
	// pass wire.CheckFix and are Newer than the one before (see
	// livemap.Update), and prev follows them here.
	moves, at := mu.moves[:0], mu.at[:0] // at: keep's entry of each move
	apply := func(f wire.Fix, late bool) {
		moves = append(moves, livemap.Move{ID: courier, Fix: f})
		at = append(at, len(keep))
		keep = append(keep, mongostore.Position{CourierID: courier, Epoch: f.Epoch, Seq: f.Seq, Lat: f.Lat, Lng: f.Lng, AccuracyM: f.Accuracy,
			SpeedMPS: f.Speed, HeadingDeg: f.Heading, Battery: f.Battery, T: f.Time, ReceivedAt: now, Late: late})
		if wire.CheckFix(f) == nil && (!hasPrev || livemap.Newer(f, prev)) {
			prev, hasPrev = f, true
		}
	}
	judged := mu.verdicts(courier)
	if !live && len(judged.unstored) > 0 {
		for _, rf := range judged.unstored {
			keep = append(keep, mongostore.Position{CourierID: courier, Epoch: rf.Epoch, Seq: rf.Seq, Lat: rf.Lat, Lng: rf.Lng, AccuracyM: rf.Accuracy,
				SpeedMPS: rf.Speed, HeadingDeg: rf.Heading, Battery: rf.Battery, T: rf.Time, ReceivedAt: now, Late: true})
		}
		judged.unstored = nil
	}
	for _, f := range fixes {
		if reason := p.check(f, now); reason != "" {
			p.reject(reason, 1)
			continue
		}
		// With a plain subscription for the live index beside the shared
		// one that stores, a replica sees a fix twice: the second time it
		// takes the first verdict (else the fix would look late: the live
		// index already has it).
		if v, ok := judged.get(f); ok {
			if !v.refused {
				keep = append(keep, mongostore.Position{CourierID: courier, Epoch: f.Epoch, Seq: f.Seq, Lat: f.Lat, Lng: f.Lng, AccuracyM: f.Accuracy,
					SpeedMPS: f.Speed, HeadingDeg: f.Heading, Battery: f.Battery, T: f.Time, ReceivedAt: now, Late: v.late})
			}
			continue
		}
		if hasPrev && !livemap.Newer(f, prev) {
			judged.put(f, verdict{late: true})
			apply(f, true) // not newer: late by definition (the index says so too)
			continue
		}
		if !hasPrev || p.plausible(prev, f, now) {
			judged.suspects = nil // the live position explains the newest fix: they were outliers
			judged.put(f, verdict{})
			apply(f, false)
			continue
		}
		judged.put(f, verdict{refused: true})
		if run := p.suspect(judged, f, now); run != nil {
			p.m.IngestFixes.WithLabelValues("reanchored").Add(float64(len(run)))
			p.log.Info("courier re-anchored: consistent fixes disagreed with the live position",
				"courier_id", courier, "fixes", len(run), "jump_m", math.Round(geo.DistanceLatLngM(prev.Lat, prev.Lng, run[0].Lat, run[0].Lng)))
			for _, rf := range run {
				judged.put(rf, verdict{late: true})
				apply(rf, true) // accepted by consensus, not by the live check: never evidence
			}
			if live {
				// The storing path has already passed over the run's earlier
				// fixes as suspects: it stores the run with its next message.
				judged.unstored = append(judged.unstored, run...)
			}
		}
	}
	keep = p.applyMoves(mu, courier, moves, at, keep, c.Fix, c.HasFix, now)
	mu.Unlock()
	if live {
		done(nil)
		return nil
	}
	if len(keep) == 0 {
		return mqttack.ErrDrop
	}
	p.history.AddFunc(ctx, keep, onStored, func(err error) {
		if err != nil {
			err = fmt.Errorf("history: %w", err)
		}
		done(err)
	})
	return nil
}

// applyMoves updates the index with one message's moves (all of courier,
// whose live fix was prev before them) and settles what each did: counted
// accepted or out of order, an applied fix told to onFix, an out-of-order
// one stored as late; a fix the index refused is counted malformed and
// taken out of keep (at[i] is move i's entry there). It returns keep. The
// caller holds st, whose scratch space moves and at are.
func (p *Pipeline) applyMoves(st *stripe, courier string, moves []livemap.Move, at []int, keep []mongostore.Position, prev wire.Fix, hasPrev bool, now time.Time) []mongostore.Position {
	st.moves, st.at = moves[:0], at[:0] // the storage, for the next message
	if len(moves) == 0 {
		return keep
	}
	st.res = p.index.UpdateBatch(st.res, moves, now)
	refused := false
	accepted, outOfOrder := 0, 0 // counted once a message: an atomic add per fix was as dear as the rest of this loop
	for i, r := range st.res {
		f := moves[i].Fix
		switch {
		case r.Err != nil:
			p.reject(RejectMalformed, 1)
			keep[at[i]].CourierID, refused = "", true
		case r.Applied:
			accepted++
			if p.onFix != nil {
				p.onFix(courier, prev, hasPrev, f)
			}
			prev, hasPrev = f, true
		case r.OutOfOrder:
			outOfOrder++
			keep[at[i]].Late = true
		}
	}
	if accepted > 0 {
		p.accepted.Add(float64(accepted))
	}
	if outOfOrder > 0 {
		p.outOfOrder.Add(float64(outOfOrder))
	}
	if refused {
		keep = slices.DeleteFunc(keep, func(k mongostore.Position) bool { return k.CourierID == "" })
	}
	return keep
}

// verdict is how a fix was judged: refused (held as a suspect), or
// accepted, late or not.
type verdict struct{ late, refused bool }

// judgedFixes remembers the verdicts on a courier's latest fixes as a few
// runs of consecutive sequence numbers with one verdict (one per message,
// typically), so the memory per courier stays small; guarded by the
// courier's stripe.
type judgedFixes struct {
	runs     []judgedRun
	unstored []wire.Fix // re-anchored on the live path, for the storing path to store
	suspects []wire.Fix // consistent with each other, not with the live position, oldest first
}

type judgedRun struct {
	epoch, from, to uint64
	v               verdict
}

const judgedRuns = 16

func (j *judgedFixes) get(f wire.Fix) (verdict, bool) {
	for i := len(j.runs) - 1; i >= 0; i-- {
		if r := j.runs[i]; r.epoch == f.Epoch && f.Seq >= r.from && f.Seq <= r.to {
			return r.v, true
		}
	}
	return verdict{}, false
}

func (j *judgedFixes) put(f wire.Fix, v verdict) {
	if n := len(j.runs); n > 0 {
		if r := &j.runs[n-1]; r.epoch == f.Epoch && r.v == v && r.to+1 == f.Seq {
			r.to = f.Seq
			return
		}
	}
	if len(j.runs) == judgedRuns {
		j.runs = append(j.runs[:0], j.runs[1:]...)
	}
	j.runs = append(j.runs, judgedRun{epoch: f.Epoch, from: f.Seq, to: f.Seq, v: v})
}

// verdicts returns courier's memory of verdicts; the caller holds st, the
// courier's stripe.
func (st *stripe) verdicts(courier string) *judgedFixes {
	j := st.judged[courier]
	if j == nil {
		if st.judged == nil {
			st.judged = map[string]*judgedFixes{}
		}
		j = &judgedFixes{}
		st.judged[courier] = j
	}
	return j
}

// suspect records f, which the live position cannot explain, among j's
// suspects (the caller holds the courier's stripe). It returns the run to
// accept when the suspects now re-anchor the courier, else nil.
func (p *Pipeline) suspect(j *judgedFixes, f wire.Fix, now time.Time) []wire.Fix {
	p.reject(RejectSpeed, 1)
	run := j.suspects
	if n := len(run); n > 0 && livemap.Newer(f, run[n-1]) && p.plausible(run[n-1], f, now) {
		run = append(run, f)
	} else {
		run = []wire.Fix{f} // earlier suspects the new one does not confirm are forgotten
	}
	if len(run) >= p.policy.ReanchorFixes || (len(run) >= 2 && clampTime(run[len(run)-1].Time, now).Sub(run[0].Time) >= p.policy.ReanchorAfter) {
		j.suspects = nil
		return run
	}
	j.suspects = run
	return nil
}

func clampTime(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}

// plausible reports whether b can follow a at MaxSpeedMPS. Within a second a
// jump of 2× the limit is allowed (timestamps are whole seconds on some
// receivers); after gaps of ten minutes or more anything goes.
func (p *Pipeline) plausible(a, b wire.Fix, now time.Time) bool {
	dt := clampTime(b.Time, now).Sub(clampTime(a.Time, now)).Seconds()
	if dt >= 600 {
		return true
	}
	limit := p.policy.MaxSpeedMPS * math.Max(dt, 2)
	// Most fixes are metres from the one before: an upper bound of the
	// distance without trigonometry settles them (the exact distance, four
	// sines and an arcsine, was a tenth of ingest's CPU per fix). Going
	// along a parallel by the longitude difference, then along a meridian,
	// is a path on the sphere, so the great circle is no longer than
	// R·(|Δlat| + cos(lat)·|Δlng|) ≤ R·(|Δlat| + |Δlng|); the margin covers
	// the exact formula's rounding, so the answer is the exact one's.
	if bound := geo.EarthRadiusM * (math.Pi / 180) * (math.Abs(b.Lat-a.Lat) + math.Abs(b.Lng-a.Lng)); bound*(1+1e-9)+1e-6 <= limit {
		return true
	}
	return geo.DistanceLatLngM(a.Lat, a.Lng, b.Lat, b.Lng) <= limit
}

// check applies the per-fix policy; it returns a rejection reason or "".
func (p *Pipeline) check(f wire.Fix, now time.Time) string {
	switch {
	case f.Time.Before(now.Add(-p.policy.MaxAge)):
		return RejectTooOld
	case f.Time.After(now.Add(p.policy.MaxFuture)):
		return RejectFuture
	case f.Accuracy != wire.Unknown && f.Accuracy > p.policy.MaxAccuracyM:
		return RejectAccuracy
	}
	return ""
}
