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

// ErrDrop tells the transport to acknowledge but discard a message.
var ErrDrop = errors.New("message dropped")
