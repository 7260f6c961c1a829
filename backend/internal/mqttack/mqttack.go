// Package mqttack is the contract between an MQTT transport (the embedded
// broker's hook, or a paho client on an external broker) and the code that
// handles device messages: when a message may be acknowledged.
package mqttack

import (
	"context"
	"errors"
)

// Handler processes a device message before the transport acknowledges it.
// nil: processed, acknowledge. ErrDrop: refused and counted, acknowledge
// and discard (a retry would be refused again). Any other error: not safe
// yet, do not acknowledge; the device or broker sends it again.
type Handler interface {
	HandleMQTT(ctx context.Context, topic string, payload []byte, retained bool) error
}

// StagedHandler splits handling in two: Stage does the order-sensitive work
// (decode, validate, update the live view, queue the write) and returns wait,
// which blocks until the message is safe. A transport keeps one topic's
// messages in order through Stage and waits for many messages at once.
// Stage's error means what Handler's does; wait's is never ErrDrop.
type StagedHandler interface {
	Handler
	Stage(ctx context.Context, topic string, payload []byte, retained bool) (wait func(context.Context) error, err error)
}

// NotifyingHandler is a StagedHandler that also reports the end of the wait
// by callback, so a transport needs no goroutine per message to wait in.
// StageNotify's error means what Stage's does; when it returns nil, done is
// called exactly once with what wait would have returned (never ErrDrop),
// perhaps before StageNotify returns, perhaps on another goroutine under a
// lock: done must not block.
type NotifyingHandler interface {
	StagedHandler
	StageNotify(ctx context.Context, topic string, payload []byte, retained bool, done func(error)) error
}

// ErrDrop tells the transport to acknowledge but discard a message.
var ErrDrop = errors.New("message dropped")
