package app

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
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
	r.m.publishRelay(ctx, courier, relayPosTopic(r.m.Config.TopicPrefix, courier), raw)
	return nil
}

func (r relayIngest) HandleOwnTracks(ctx context.Context, courier, device string, payload []byte) error {
	if err := r.Pipeline.HandleOwnTracks(ctx, courier, device, payload); err != nil {
		return err
	}
	if r.m.clustered() {
		r.m.publishRelay(ctx, courier, relayOwnTracksTopic(r.m.Config.TopicPrefix, courier, device), payload)
	}
	return nil
}

// publishRelay sends a relay (best effort: stored already; the other
// replicas then learn the position from the courier's next report).
func (m *Main) publishRelay(ctx context.Context, courier, t string, payload []byte) {
	if m.Bus == nil {
		return
	}
	if err := m.Bus.Publish(ctx, t, payload, 1, false); err != nil {
		m.Log.Warn("HTTP position not relayed to the other replicas", "courier_id", courier, "err", err)
	}
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

// announceCourier tells the other replicas about c (best effort: a replica
// that misses it gets the retained note when it reconnects).
func (m *Main) announceCourier(ctx context.Context, c account.Courier, at time.Time) {
	if !m.clustered() || m.Bus == nil {
		return
	}
	m.notes.newer(c.ID, at)
	raw, err := json.Marshal(courierNote{V: 1, OnShift: c.OnShift, Vehicle: c.Vehicle, Capacity: c.Capacity, At: at, From: m.Config.MQTTClientID})
	if err != nil {
		m.Log.Error("courier note encode", "err", err)
		return
	}
	if err := m.Bus.Publish(ctx, noteTopic(m.Config.TopicPrefix, c.ID), raw, 1, true); err != nil {
		m.Log.Warn("courier note not published; other replicas learn of it at their next restart", "courier_id", c.ID, "err", err)
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
