package mqttbus

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// bufferedDial returns paho's connection opener for url's scheme with the
// connection wrapped in a bufferedConn, or nil for what it leaves to paho
// (websockets, a proxy from the environment). paho reads each
// packet from the socket in three or more reads and writes each packet with
// its own write: at tens of thousands of positions a second, one system
// call per PUBACK and several per PUBLISH were a tenth of the backend's CPU.
func BufferedDial(rawURL string) paho.OpenConnectionFunc {
	u, err := url.Parse(rawURL)
	if err != nil || os.Getenv("all_proxy") != "" || os.Getenv("ALL_PROXY") != "" {
		return nil
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "tcp", "mqtt", "unix", "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
	default:
		return nil
	}
	return func(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
		d := o.Dialer
		if d == nil {
			d = &net.Dialer{Timeout: 30 * time.Second}
		}
		var c net.Conn
		var err error
		switch scheme {
		case "tcp", "mqtt":
			c, err = d.Dial("tcp", uri.Host)
		case "unix": // as paho: unix://path, or the host for a relative one
			path := uri.Path
			if uri.Host != "" {
				path = uri.Host
			}
			c, err = d.Dial("unix", path)
		default:
			c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
		}
		if err != nil {
			return nil, err
		}
		return newBufferedConn(c), nil
	}
}

// bufferedConn reads through a buffer and coalesces writes: Write copies
// the packet into a pending buffer that one goroutine writes out, so the
// packets written while a write is in progress (a burst of PUBACKs after a
// history flush) go out in one system call. Write reports the error of an
// earlier write that failed; Close writes what is pending first (paho's
// DISCONNECT), for at most closeFlush.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	room    *sync.Cond // signalled when the pending buffer was taken
	pending []byte
	err     error
	closing bool
	wake    chan struct{}
	flushed chan struct{} // closed when the writer has stopped
	once    sync.Once
}

const (
	readBuffer   = 64 << 10
	maxPending   = 256 << 10 // past this Write waits for the writer
	closeFlush   = time.Second
	errWriteGone = "mqtt connection writer stopped"
)

func newBufferedConn(c net.Conn) *bufferedConn {
	b := &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), wake: make(chan struct{}, 1), flushed: make(chan struct{})}
	b.room = sync.NewCond(&b.mu)
	go b.writer()
	return b
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.pending) >= maxPending && b.err == nil && !b.closing {
		b.room.Wait()
	}
	if b.err == nil && b.closing {
		b.err = errors.New(errWriteGone)
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writer writes out what Write gathered, until Close or a write error.
func (b *bufferedConn) writer() {
	defer close(b.flushed)
	var out []byte
	for {
		<-b.wake
		b.mu.Lock()
		out, b.pending = b.pending, out[:0]
		closing := b.closing
		b.room.Broadcast()
		b.mu.Unlock()
		if len(out) > 0 {
			if _, err := b.Conn.Write(out); err != nil {
				b.mu.Lock()
				b.err = err
				b.room.Broadcast()
				b.mu.Unlock()
				return
			}
		}
		if closing {
			return
		}
	}
}

// Close writes what is pending (for at most closeFlush), then closes.
func (b *bufferedConn) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closing = true
		b.room.Broadcast()
		b.mu.Unlock()
		_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		select {
		case b.wake <- struct{}{}:
		default:
		}
		select {
		case <-b.flushed:
		case <-time.After(closeFlush):
		}
	})
	return b.Conn.Close()
}

// outboundStore is paho's memory store without the received QoS 1
// messages: paho keeps each there until its PUBACK is sent, and on a
// reconnect discards what it finds ("invalid message type in store"); the
// broker redelivers what we did not acknowledge. Everything else (our
// publishes awaiting their PUBACK) is kept as before.
type outboundStore struct {
	*paho.MemoryStore
	inbound atomic.Int64 // inbound messages kept (QoS 2, or a PUBREL): Del looks only then
}

func (s *outboundStore) Put(key string, m packets.ControlPacket) {
	if strings.HasPrefix(key, "i.") {
		if p, ok := m.(*packets.PublishPacket); ok && p.Qos == 1 {
			return
		}
		s.inbound.Add(1)
	}
	s.MemoryStore.Put(key, m)
}

func (s *outboundStore) Del(key string) {
	if strings.HasPrefix(key, "i.") {
		if s.inbound.Load() == 0 {
			return
		}
		s.inbound.Add(-1)
	}
	s.MemoryStore.Del(key)
}
