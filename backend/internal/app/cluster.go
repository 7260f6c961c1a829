package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/ingest"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Replicas tell each other about changes to a courier's entry in the live
// index that do not come from the device (shift, vehicle, capacity): the
// replica that handled the request publishes a note, retained, on
// {prefix}/backend/couriers/{id}; every replica's live link subscribes to it
// and applies the newest note per courier (last writer wins by its time).
// Devices can neither publish nor read these topics (deploy/mosquitto/acl).

// courierNote is the message between replicas.
type courierNote struct {
	V        int       `json:"v"`
	OnShift  bool      `json:"on_shift"`
	Vehicle  string    `json:"vehicle"`
	Capacity int       `json:"capacity"`
	At       time.Time `json:"at"`
	From     string    `json:"from"`
}

func notesFilter(prefix string) string { return prefix + "/backend/couriers/+" }

// Positions that arrive over HTTP (OwnTracks HTTP mode, Traccar Client)
// come to one replica, which stores them; it then relays them to every
// replica's live index on {prefix}/backend/positions/{courier} (the fixes
// as JSON, relayedFixes) and {prefix}/backend/owntracks/{courier}/{device}
// (the OwnTracks JSON as it came), QoS 1, not retained. Each live link
// runs them through the live-only pipeline (index, no storage, no
// acknowledgement): the same checks as a device's MQTT fixes, and the
// receiving replica's own copy takes the verdict it already gave. Without
// this, a courier on Traccar Client was in one replica's index only, and an
// epoch run by another replica did not offer it anything.
func relayFilters(prefix string) []string {
	return []string{prefix + "/backend/positions/+", prefix + "/backend/owntracks/+/+"}
}

func relayPosTopic(prefix, courier string) string { return prefix + "/backend/positions/" + courier }

func relayOwnTracksTopic(prefix, courier, device string) string {
	return prefix + "/backend/owntracks/" + courier + "/" + device
}

// relayedFixes is a relay of fixes: JSON, not a device's position
// payload, whose decoder (rightly) refuses the epochs reserved for fixes
// the backend derives (Traccar Client's), and which would round them to
// the wire's 1e-6 degree.
type relayedFixes struct {
	V     int        `json:"v"`
	Fixes []wire.Fix `json:"fixes"`
}

// replicaMessage handles what replicas send each other (the part of the
// topic after {prefix}/backend/: a courier note or a relay); handled is
// false for anything else (a device's message).
func (x noteMux) replicaMessage(ctx context.Context, t string, payload []byte) (handled bool, err error) {
	rest, ok := strings.CutPrefix(t, x.backend)
	if !ok {
		return false, nil
	}
	if id, ok := strings.CutPrefix(rest, "couriers/"); ok {
		return true, x.m.applyNote(id, payload)
	}
	if id, ok := strings.CutPrefix(rest, "positions/"); ok && topic.ValidID(id) {
		return true, x.applyRelay(ctx, id, "", payload)
	}
	if rest, ok := strings.CutPrefix(rest, "owntracks/"); ok {
		if id, dev, cut := strings.Cut(rest, "/"); cut && topic.ValidID(id) && topic.ValidDevice(dev) {
			return true, x.applyRelay(ctx, id, topic.OwnTracksTopic(id, dev), payload)
		}
	}
	return false, nil
}

// applyRelay puts a relayed HTTP position into the live index.
func (x noteMux) applyRelay(ctx context.Context, courier, owntracks string, payload []byte) error {
	if owntracks != "" {
		return x.live.HandleMQTT(ctx, owntracks, payload, false)
	}
	var r relayedFixes
	if err := json.Unmarshal(payload, &r); err != nil || r.V != 1 || len(r.Fixes) == 0 {
		x.m.Log.Warn("relayed positions refused", "courier_id", courier)
		return mqttack.ErrDrop
	}
	return x.live.HandleFixes(ctx, courier, r.Fixes)
}

// relayIngest is the HTTP device ingestion of a replica among others: the
// pipeline's, then the relay of what it took to the other replicas.
type relayIngest struct {
	*ingest.Pipeline
	m *Main
}

func (r relayIngest) HandleFixes(ctx context.Context, courier string, fixes []wire.Fix) error {
	if err := r.Pipeline.HandleFixes(ctx, courier, fixes); err != nil {
		return err
	}
	if !r.m.clustered() {
		return nil
	}
	raw, err := json.Marshal(relayedFixes{V: 1, Fixes: fixes})
	if err != nil { // a float JSON cannot hold: HandleFixes refused it already
		return nil
	}
	r.m.publishRelay(relayPosTopic(r.m.Config.TopicPrefix, courier), raw)
	return nil
}

func (r relayIngest) HandleOwnTracks(ctx context.Context, courier, device string, payload []byte) error {
	if err := r.Pipeline.HandleOwnTracks(ctx, courier, device, payload); err != nil {
		return err
	}
	if r.m.clustered() {
		r.m.publishRelay(relayOwnTracksTopic(r.m.Config.TopicPrefix, courier, device), bytes.Clone(payload)) // the request body: reused after the handler
	}
	return nil
}

// publishRelay queues a relay of a stored position for the other replicas
// (payload is the relay's own: it is sent later). It never waits on the
// broker (see relayOut): the device's request is answered once its report
// is stored.
func (m *Main) publishRelay(t string, payload []byte) {
	if m.relays == nil {
		return
	}
	m.relays.position(m, relayMsg{topic: t, payload: payload})
}

// What this replica tells the others (relayed HTTP positions, courier
// notes) leaves on goroutines of its own, not on the request that made it:
// paho holds a QoS 1 publish until the broker acknowledges it, and a
// broker that stops answering keeps the connection up, so a request that
// published would hang with it (a Traccar Client report unanswered, then
// sent again, each one more goroutine waiting). Positions are best effort:
// past relayQueue waiting, or while the broker is away, one is dropped and
// counted (tawsil_cluster_relays_total), and the other replicas learn the
// courier's position from its next report. Notes are retained state: the
// newest per courier waits until it is sent, so the broker's retained copy
// ends as the newest. The request that made a note waits for it up to
// noteWait: in the common case the other replicas know of a shift before
// the courier's next fix reaches them, as when the request published it.
type relayOut struct {
	positions chan relayMsg

	mu    sync.Mutex
	notes map[string]*pendingNote // courier -> newest note not yet sent
	wake  chan struct{}

	warned atomic.Int64 // unix nanoseconds of the last warning (one per relayWarnEvery)
}

type relayMsg struct {
	courier, topic string
	payload        []byte
}

// pendingNote is a courier's newest note not yet sent, and the channels to
// close once it is (those of the notes it replaced too).
type pendingNote struct {
	r    relayMsg
	done []chan struct{}
}

const (
	relayQueue     = 1024
	relayTimeout   = 5 * time.Second  // a position's publish
	noteTimeout    = 30 * time.Second // a note's publish, retried until sent
	noteWait       = time.Second      // how long the request that made a note waits for it
	relayWarnEvery = 10 * time.Second
)

func newRelayOut() *relayOut {
	return &relayOut{positions: make(chan relayMsg, relayQueue), notes: map[string]*pendingNote{}, wake: make(chan struct{}, 1)}
}

// position queues r, or drops it when the queue is full.
func (o *relayOut) position(m *Main, r relayMsg) {
	select {
	case o.positions <- r:
	default:
		o.count(m, "position", "dropped", errors.New("relay queue full"))
	}
}

// note queues r in place of any note of its courier not yet sent, and
// returns a channel closed once r or a newer note of its courier is sent.
func (o *relayOut) note(r relayMsg) <-chan struct{} {
	done := make(chan struct{})
	o.mu.Lock()
	p := o.notes[r.courier]
	if p == nil {
		p = &pendingNote{}
		o.notes[r.courier] = p
	}
	p.r, p.done = r, append(p.done, done)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return done
}

func (o *relayOut) count(m *Main, kind, outcome string, err error) {
	if m.Metrics != nil {
		m.Metrics.ClusterRelays.WithLabelValues(kind, outcome).Inc()
	}
	if err == nil {
		return
	}
	now := time.Now().UnixNano()
	if last := o.warned.Load(); now-last >= int64(relayWarnEvery) && o.warned.CompareAndSwap(last, now) {
		m.Log.Warn("message for the other replicas not sent (tawsil_cluster_relays_total counts them)", "kind", kind, "outcome", outcome, "err", err)
	}
}

// sendPositions publishes queued positions until ctx ends.
func (o *relayOut) sendPositions(ctx context.Context, m *Main) {
	for {
		var r relayMsg
		select {
		case <-ctx.Done():
			return
		case r = <-o.positions:
		}
		if !m.Bus.Connected() {
			o.count(m, "position", "dropped", errors.New("broker unreachable"))
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, relayTimeout)
		err := m.Bus.Publish(pctx, r.topic, r.payload, 1, false)
		cancel()
		if err != nil {
			o.count(m, "position", "failed", err)
			continue
		}
		o.count(m, "position", "sent", nil)
	}
}

// sendNotes publishes queued notes, each until it is sent or a newer note
// of its courier replaces it; when ctx ends it tries what is left once.
func (o *relayOut) sendNotes(ctx context.Context, m *Main) {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			o.flushNotes(fctx, m)
			cancel()
			return
		case <-o.wake:
		}
		if !o.flushNotes(ctx, m) {
			select { // the broker is away: try again in a second
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			select {
			case o.wake <- struct{}{}:
			default:
			}
		}
	}
}

// flushNotes publishes the notes waiting and reports whether all were sent.
func (o *relayOut) flushNotes(ctx context.Context, m *Main) bool {
	o.mu.Lock()
	pending := o.notes
	o.notes = map[string]*pendingNote{}
	o.mu.Unlock()
	ok := true
	for courier, p := range pending {
		pctx, cancel := context.WithTimeout(ctx, noteTimeout)
		err := m.Bus.Publish(pctx, p.r.topic, p.r.payload, 1, true)
		cancel()
		if err == nil {
			o.count(m, "note", "sent", nil)
			for _, d := range p.done {
				close(d)
			}
			continue
		}
		ok = false
		o.count(m, "note", "failed", err)
		o.mu.Lock()
		if newer := o.notes[courier]; newer != nil { // it replaces p: its sending answers p's waiters
			newer.done = append(newer.done, p.done...)
		} else {
			o.notes[courier] = p
		}
		o.mu.Unlock()
	}
	return ok
}

func noteTopic(prefix, courier string) string { return prefix + "/backend/couriers/" + courier }

// notes holds the time of the newest note applied per courier.
type notes struct {
	mu sync.Mutex
	at map[string]time.Time
}

// newer records at for courier and reports whether it is newer than what was applied.
func (n *notes) newer(courier string, at time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.at == nil {
		n.at = map[string]time.Time{}
	}
	if !at.After(n.at[courier]) {
		return false
	}
	n.at[courier] = at
	return true
}

// clustered reports whether other replicas may be listening.
func (m *Main) clustered() bool { return m.Broker == nil && m.Config.MQTTGroup != "" }

// announceCourier tells the other replicas about c, retained (a replica
// that misses it gets the note when it reconnects), waiting for the
// broker to take the note up to noteWait or until ctx ends (see relayOut).
func (m *Main) announceCourier(ctx context.Context, c account.Courier, at time.Time) {
	if !m.clustered() || m.relays == nil {
		return
	}
	m.notes.newer(c.ID, at)
	raw, err := json.Marshal(courierNote{V: 1, OnShift: c.OnShift, Vehicle: c.Vehicle, Capacity: c.Capacity, At: at, From: m.Config.MQTTClientID})
	if err != nil {
		m.Log.Error("courier note encode", "err", err)
		return
	}
	sent := m.relays.note(relayMsg{courier: c.ID, topic: noteTopic(m.Config.TopicPrefix, c.ID), payload: raw})
	wait := time.NewTimer(noteWait)
	defer wait.Stop()
	select {
	case <-sent:
	case <-wait.C:
	case <-ctx.Done():
	}
}

// applyNote applies another replica's note to the live index.
func (m *Main) applyNote(courier string, payload []byte) error {
	var n courierNote
	if err := json.Unmarshal(payload, &n); err != nil || n.V != 1 || !topic.ValidID(courier) {
		m.Log.Warn("courier note refused", "courier_id", courier)
		return mqttack.ErrDrop
	}
	if !m.notes.newer(courier, n.At) {
		return nil
	}
	if err := m.Index.SetProfile(courier, n.Vehicle, n.Capacity); err != nil {
		m.Log.Warn("courier profile refused", "courier_id", courier, "err", err)
		return mqttack.ErrDrop
	}
	m.setShiftIndex(courier, n.OnShift)
	return nil
}

// setShiftIndex puts a shift change into the live index.
func (m *Main) setShiftIndex(courierID string, on bool) {
	m.Index.SetShift(courierID, on)
	lc, _ := m.Index.Get(courierID)
	switch {
	case !on:
		_ = m.Index.SetStatus(courierID, livemap.StatusOffline, lc.Load)
	case lc.Load > 0:
		_ = m.Index.SetStatus(courierID, livemap.StatusBusy, lc.Load)
	default:
		_ = m.Index.SetStatus(courierID, livemap.StatusAvailable, 0)
	}
}

// noteMux sends the replicas' notes to applyNote and everything else to the
// device pipeline.
type noteMux struct {
	m       *Main
	backend string // {prefix}/backend/: the replicas' own topics
	next    mqttack.StagedHandler
	// live takes the relayed HTTP positions (replicaMessage): the live-only
	// pipeline, whatever next is, so that a relay is never stored twice.
	live ingest.Live
}

func (x noteMux) HandleMQTT(ctx context.Context, t string, payload []byte, retained bool) error {
	wait, err := x.Stage(ctx, t, payload, retained)
	if err != nil {
		return err
	}
	return wait(ctx)
}

func (x noteMux) Stage(ctx context.Context, t string, payload []byte, retained bool) (func(context.Context) error, error) {
	if handled, err := x.replicaMessage(ctx, t, payload); handled {
		if err != nil {
			return nil, err
		}
		return func(context.Context) error { return nil }, nil
	}
	return x.next.Stage(ctx, t, payload, retained)
}

// StageNotify is Stage with a callback (mqttack.NotifyingHandler), when
// the next handler has it.
func (x noteMux) StageNotify(ctx context.Context, t string, payload []byte, retained bool, done func(error)) error {
	if handled, err := x.replicaMessage(ctx, t, payload); handled {
		if err != nil {
			return err
		}
		done(nil)
		return nil
	}
	if n, ok := x.next.(mqttack.NotifyingHandler); ok {
		return n.StageNotify(ctx, t, payload, retained, done)
	}
	wait, err := x.next.Stage(ctx, t, payload, retained)
	if err != nil {
		return err
	}
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		done(wait(wctx))
	}()
	return nil
}
