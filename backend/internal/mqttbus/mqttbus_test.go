package mqttbus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// TestCourierKey: a courier's positions, states, OwnTracks and the replicas'
// notes about it go to one worker, so they are handled in arrival order.
func TestCourierKey(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "tawsil/v1/couriers/c42/pos", want: "c42"},
		{give: "tawsil/v1/couriers/c42/state", want: "c42"},
		{give: "tawsil/v1/backend/couriers/c42", want: "c42"},
		{give: "owntracks/c42/phone", want: "c42"},
		{give: "other/topic", want: "other/topic"},
	}
	for _, tt := range tests {
		if got := courierKey(tt.give); got != tt.want {
			t.Errorf("courierKey(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// fakeMessage is a received message; Ack records the acknowledgement.
type fakeMessage struct {
	topic string
	acked chan struct{}
}

func (m *fakeMessage) Duplicate() bool   { return false }
func (m *fakeMessage) Qos() byte         { return 1 }
func (m *fakeMessage) Retained() bool    { return false }
func (m *fakeMessage) Topic() string     { return m.topic }
func (m *fakeMessage) MessageID() uint16 { return 1 }
func (m *fakeMessage) Payload() []byte   { return nil }
func (m *fakeMessage) Ack()              { close(m.acked) }

// stagedProbe records the contexts a transport gives Stage and wait.
type stagedProbe struct {
	stageDeadline, waitDeadline bool
}

func (p *stagedProbe) HandleMQTT(context.Context, string, []byte, bool) error { return nil }

func (p *stagedProbe) Stage(ctx context.Context, _ string, _ []byte, _ bool) (func(context.Context) error, error) {
	_, p.stageDeadline = ctx.Deadline()
	return func(ctx context.Context) error {
		_, p.waitDeadline = ctx.Deadline()
		return nil
	}, nil
}

// TestStageWithoutDeadline: Stage, which blocks while the history queue is
// full (backpressure), is never given a deadline: a message refused for want
// of room would stay unacknowledged, and the broker redelivers it only after
// a reconnect (a loss, measured on the bench before). The wait for the
// write keeps one; the message is acknowledged once it returns.
func TestStageWithoutDeadline(t *testing.T) {
	p := &stagedProbe{}
	b := &link{handler: p, stop: make(chan struct{})}
	b.life, b.end = context.WithCancel(context.Background())
	defer b.end()
	m := &fakeMessage{topic: "tawsil/v1/couriers/c1/pos", acked: make(chan struct{})}
	b.handle(m)
	<-m.acked
	if p.stageDeadline || !p.waitDeadline {
		t.Fatalf("stage deadline %v (want none), wait deadline %v (want one)", p.stageDeadline, p.waitDeadline)
	}
}

// notifyProbe is a NotifyingHandler whose done the test calls.
type notifyProbe struct {
	stagedProbe
	done chan func(error)
}

func (p *notifyProbe) StageNotify(_ context.Context, _ string, _ []byte, _ bool, done func(error)) error {
	p.done <- done
	return nil
}

// TestNotifiedAck: with a NotifyingHandler a message is acknowledged once
// its done reports success, not before (the write is durable only then), and
// not at all when done reports an error (the broker redelivers it).
func TestNotifiedAck(t *testing.T) {
	p := &notifyProbe{done: make(chan func(error), 2)}
	b := &link{handler: p, stop: make(chan struct{}), acks: ackQueue{wake: make(chan struct{}, 1)},
		o: Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	b.life, b.end = context.WithCancel(context.Background())
	defer b.end()
	go b.acker()
	defer close(b.stop)

	ok := &fakeMessage{topic: "tawsil/v1/couriers/c1/pos", acked: make(chan struct{})}
	failed := &fakeMessage{topic: "tawsil/v1/couriers/c2/pos", acked: make(chan struct{})}
	b.handle(ok)
	b.handle(failed)
	doneOK, doneFailed := <-p.done, <-p.done
	select {
	case <-ok.acked:
		t.Fatal("acknowledged before done")
	default:
	}
	doneFailed(errors.New("store down"))
	doneOK(nil)
	<-ok.acked
	// The acker handles in order: the failed one, before ok, was not acknowledged.
	select {
	case <-failed.acked:
		t.Fatal("a message whose handling failed was acknowledged")
	default:
	}
}
