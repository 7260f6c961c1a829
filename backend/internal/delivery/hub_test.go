package delivery

import (
	"errors"
	"testing"
)

func TestHubStreamLimitAndEnd(t *testing.T) {
	h := NewHub()
	var subs []*Subscription
	for i := 0; i < MaxStreamsPerUser; i++ {
		s, err := h.Subscribe("u1")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := h.Subscribe("u1"); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("stream %d of one user: %v, want ErrTooManyStreams", MaxStreamsPerUser+1, err)
	}
	other, err := h.Subscribe("u2")
	if err != nil {
		t.Fatal(err)
	}
	h.Unsubscribe(subs[0])
	h.Unsubscribe(subs[0]) // twice: counted once
	again, err := h.Subscribe("u1")
	if err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	if n := h.EndUser("u1"); n != MaxStreamsPerUser {
		t.Fatalf("EndUser ended %d streams, want %d", n, MaxStreamsPerUser)
	}
	for _, s := range append(subs[1:], again) {
		select {
		case <-s.Ended():
		default:
			t.Fatal("a stream of the revoked user is still open")
		}
		h.Unsubscribe(s) // what the handler does next: harmless
	}
	select {
	case <-other.Ended():
		t.Fatal("another user's stream ended")
	default:
	}
	h.Publish("x", map[string]any{})
	if len(other.C) != 1 {
		t.Fatal("the other user's stream lost the event")
	}
	if _, err := h.Subscribe("u1"); err != nil {
		t.Fatalf("a new login may stream again: %v", err)
	}
}
