package app

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
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
	m      *Main
	prefix string
	next   mqttack.StagedHandler
}

func (x noteMux) HandleMQTT(ctx context.Context, t string, payload []byte, retained bool) error {
	wait, err := x.Stage(ctx, t, payload, retained)
	if err != nil {
		return err
	}
	return wait(ctx)
}

func (x noteMux) Stage(ctx context.Context, t string, payload []byte, retained bool) (func(context.Context) error, error) {
	if id, ok := strings.CutPrefix(t, x.prefix); ok {
		if err := x.m.applyNote(id, payload); err != nil {
			return nil, err
		}
		return func(context.Context) error { return nil }, nil
	}
	return x.next.Stage(ctx, t, payload, retained)
}

// StageNotify is Stage with a callback (mqttack.NotifyingHandler), when
// the next handler has it.
func (x noteMux) StageNotify(ctx context.Context, t string, payload []byte, retained bool, done func(error)) error {
	if id, ok := strings.CutPrefix(t, x.prefix); ok {
		if err := x.m.applyNote(id, payload); err != nil {
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
