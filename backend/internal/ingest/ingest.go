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
	"log/slog"
	"math"
	"time"

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
}

// New builds a pipeline. onFix may be nil.
func New(prefix string, p Policy, index Index, history *History, onFix FixObserver, log *slog.Logger, m *metrics.Metrics) *Pipeline {
	return &Pipeline{prefix: prefix, policy: p, index: index, history: history, onFix: onFix, log: log, m: m, now: time.Now}
}

var _ mqttack.Handler = (*Pipeline)(nil)

func (p *Pipeline) reject(reason string, n int) {
	p.m.IngestRejections.WithLabelValues(reason).Add(float64(n))
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

var _ mqttack.StagedHandler = (*Pipeline)(nil)

func done(context.Context) error { return nil }

// Stage validates a message, updates the live index and queues its history
// write; wait blocks until that write is durable.
func (p *Pipeline) Stage(ctx context.Context, t string, payload []byte, retained bool) (func(context.Context) error, error) {
	courier, kind, ok := topic.Parse(p.prefix, t)
	if !ok {
		p.reject(RejectTopic, 1)
		return nil, mqttack.ErrDrop
	}
	p.m.IngestMessages.WithLabelValues(string(kind)).Inc()
	switch kind {
	case topic.Pos:
		if retained {
			p.reject(RejectRetained, 1)
			return nil, mqttack.ErrDrop
		}
		fixes, err := wire.DecodeBatch(payload)
		if err != nil {
			p.reject(decodeReason(err), 1)
			return nil, mqttack.ErrDrop
		}
		return p.fixes(ctx, courier, fixes)
	case topic.OwnTracks:
		if retained {
			p.reject(RejectRetained, 1)
			return nil, mqttack.ErrDrop
		}
		fix, err := wire.DecodeOwnTracks(payload)
		if errors.Is(err, wire.ErrNotLocation) {
			p.ownTracksOther(courier, payload)
			return nil, mqttack.ErrDrop
		}
		if err != nil {
			p.reject(decodeReason(err), 1)
			return nil, mqttack.ErrDrop
		}
		return p.fixes(ctx, courier, []wire.Fix{fix})
	case topic.State:
		s, err := wire.DecodeState(payload)
		if err != nil {
			p.reject(decodeReason(err), 1)
			return nil, mqttack.ErrDrop
		}
		p.index.SetOnline(courier, s.Online, p.now())
		return done, nil
	default: // tasks/config are ours; a device may not publish them (the ACL refuses it too)
		p.reject(RejectTopic, 1)
		return nil, mqttack.ErrDrop
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
	wait, err := p.fixes(ctx, courier, fixes)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// HandleOwnTracks processes an OwnTracks message that came over HTTP (the
// apps' HTTP mode) exactly as if it had been published on
// owntracks/{courier}/{device}. device must pass topic.ValidID.
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

// fixes validates, indexes and stores one message's fixes.
func (p *Pipeline) fixes(ctx context.Context, courier string, fixes []wire.Fix) (func(context.Context) error, error) {
	now := p.now()
	c, known := p.index.Get(courier)
	if !known || !c.OnShift {
		// Off shift: where a courier is outside work is none of our business.
		p.reject(RejectOffShift, len(fixes))
		return nil, mqttack.ErrDrop
	}
	prev, hasPrev := c.Fix, c.HasFix
	keep := make([]mongostore.Position, 0, len(fixes))
	for _, f := range fixes {
		if reason := p.check(f, now, prev, hasPrev); reason != "" {
			p.reject(reason, 1)
			continue
		}
		res, err := p.index.Update(courier, f, now)
		if err != nil {
			p.reject(RejectMalformed, 1)
			continue
		}
		switch {
		case res.Applied:
			p.m.IngestFixes.WithLabelValues("accepted").Inc()
			if p.onFix != nil {
				p.onFix(courier, prev, hasPrev, f)
			}
			prev, hasPrev = f, true
		case res.OutOfOrder:
			p.m.IngestFixes.WithLabelValues("out_of_order").Inc()
		}
		keep = append(keep, mongostore.Position{CourierID: courier, Seq: f.Seq, Lat: f.Lat, Lng: f.Lng, AccuracyM: f.Accuracy,
			SpeedMPS: f.Speed, HeadingDeg: f.Heading, Battery: f.Battery, T: f.Time, ReceivedAt: now})
	}
	if len(keep) == 0 {
		return nil, mqttack.ErrDrop
	}
	durable := p.history.Add(ctx, keep)
	return func(ctx context.Context) error {
		select {
		case err := <-durable:
			if err != nil {
				return fmt.Errorf("history: %w", err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// check applies the policy; it returns a rejection reason or "".
func (p *Pipeline) check(f wire.Fix, now time.Time, prev wire.Fix, hasPrev bool) string {
	switch {
	case f.Time.Before(now.Add(-p.policy.MaxAge)):
		return RejectTooOld
	case f.Time.After(now.Add(p.policy.MaxFuture)):
		return RejectFuture
	case f.Accuracy != wire.Unknown && f.Accuracy > p.policy.MaxAccuracyM:
		return RejectAccuracy
	}
	if hasPrev && f.Seq > prev.Seq {
		dt := f.Time.Sub(prev.Time).Seconds()
		d := livemap.DistanceM(prev.Lat, prev.Lng, f.Lat, f.Lng)
		// Within a second a jump of 2× the limit is allowed (timestamps are
		// whole seconds on some receivers); after long gaps anything goes.
		if dt < 600 && d > p.policy.MaxSpeedMPS*math.Max(dt, 2) {
			return RejectSpeed
		}
	}
	return ""
}
