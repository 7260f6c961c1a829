package auth

import (
	"sync"
	"time"
)

// Throttle slows password guessing per account and per client address. After
// Free failures a key must wait, doubling from Base up to Max; a success clears
// the account's record. Lockouts never exceed Max, so an attacker cannot keep
// a real user out for long, and the per-address limit stops spraying many
// accounts from one place.
type Throttle struct {
	Free int
	Base time.Duration
	Max  time.Duration

	mu   sync.Mutex
	keys map[string]*strikes
	now  func() time.Time
}

type strikes struct {
	fails int
	until time.Time
	last  time.Time
}

// NewThrottle returns a throttle: 5 free failures, then 1s doubling up to 5m.
func NewThrottle() *Throttle {
	return &Throttle{Free: 5, Base: time.Second, Max: 5 * time.Minute, keys: map[string]*strikes{}, now: time.Now}
}

// Wait returns how long key must still wait before another attempt (0: go).
func (t *Throttle) Wait(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.keys[key]
	if s == nil {
		return 0
	}
	if d := s.until.Sub(t.now()); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt for key.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	s := t.keys[key]
	if s == nil || now.Sub(s.last) > 2*t.Max {
		s = &strikes{}
		t.keys[key] = s
	}
	s.fails++
	s.last = now
	if over := s.fails - t.Free; over > 0 {
		d := t.Base << min(over-1, 30)
		if d > t.Max || d <= 0 {
			d = t.Max
		}
		s.until = now.Add(d)
	}
	if len(t.keys) > 100_000 { // bound memory under a spray attack
		for k, v := range t.keys {
			if now.Sub(v.last) > 2*t.Max {
				delete(t.keys, k)
			}
		}
	}
}

// Succeed clears key's record.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}
