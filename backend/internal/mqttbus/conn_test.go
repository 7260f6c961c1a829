package mqttbus

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// loopback returns a bufferedConn dialled to a listener on port 0, and the
// server's end.
func loopback(t *testing.T) (*bufferedConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	t.Cleanup(func() { _ = srv.Close() })
	return newBufferedConn(c), srv
}

// TestBufferedConnWrites: what is written arrives whole and in order, and
// Close sends what was still pending (paho writes DISCONNECT, then closes).
func TestBufferedConnWrites(t *testing.T) {
	c, srv := loopback(t)
	var want bytes.Buffer
	for i := range 5000 {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	last := []byte{0xe0, 0x00} // DISCONNECT
	want.Write(last)
	if _, err := c.Write(last); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(srv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("server read %d bytes, want %d (or not the same)", len(got), want.Len())
	}
	if _, err := c.Write([]byte{0xc0, 0x00}); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestBufferedConnReadsPackets: paho's packet reader over the buffered
// reader gets every packet of a burst, whatever its cut.
func TestBufferedConnReadsPackets(t *testing.T) {
	c, srv := loopback(t)
	defer c.Close()
	const n = 300
	go func() {
		var out bytes.Buffer
		for i := range n {
			p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
			p.Qos, p.MessageID, p.TopicName = 1, uint16(i+1), "tawsil/v1/couriers/c1/pos"
			p.Payload = bytes.Repeat([]byte{byte(i)}, i)
			if err := p.Write(&out); err != nil {
				t.Error(err)
				return
			}
		}
		b := out.Bytes()
		for len(b) > 0 { // odd-sized writes: packets cut anywhere
			k := min(len(b), 777)
			if _, err := srv.Write(b[:k]); err != nil {
				t.Error(err)
				return
			}
			b = b[k:]
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		cp, err := packets.ReadPacket(c)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p, ok := cp.(*packets.PublishPacket)
		if !ok || p.MessageID != uint16(i+1) || len(p.Payload) != i {
			t.Fatalf("packet %d: %v", i, cp)
		}
	}
}

// TestBufferedConnWriteError: once the connection is gone, Write says so
// (paho then reconnects) instead of buffering for ever.
func TestBufferedConnWriteError(t *testing.T) {
	c, srv := loopback(t)
	defer c.Close()
	_ = srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write(make([]byte, 4096)); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("writes to a closed peer never failed")
}

// TestOutboundStore: received QoS 1 messages are not kept (paho discards
// them at a reconnect anyway); our own publishes awaiting PUBACK are.
func TestOutboundStore(t *testing.T) {
	s := &outboundStore{MemoryStore: paho.NewMemoryStore()}
	s.Open()
	in := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	in.Qos, in.MessageID = 1, 7
	s.Put("i.7", in)
	out := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	out.Qos, out.MessageID = 1, 9
	s.Put("o.9", out)
	if keys := s.All(); len(keys) != 1 || keys[0] != "o.9" {
		t.Fatalf("stored %v, want [o.9]", keys)
	}
	s.Del("i.7")
	s.Del("o.9")
	if keys := s.All(); len(keys) != 0 {
		t.Fatalf("left %v", keys)
	}
}
