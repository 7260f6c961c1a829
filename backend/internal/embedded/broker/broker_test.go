package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// oneDevice accepts one device login.
type oneDevice struct{}

func (oneDevice) DeviceLogin(_ context.Context, user, pass string) (string, string, error) {
	if user == "c1" && pass == devicePassword {
		return "c1", "dev-c1", nil
	}
	return "", "", errors.New("bad login")
}

const devicePassword = "Pw-7f3a9c1e5b2d4f6a8c0e"

func str(s string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
	return append(b, s...)
}

func packet(typ byte, body []byte) []byte {
	out := []byte{typ}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// connectPacket is an MQTT 3.1.1 CONNECT with username and password.
func connectPacket(clientID, user, pass string) []byte {
	body := append(str("MQTT"), 4, 0xC2, 0, 30) // level 4; username, password, clean session; keep-alive 30 s
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	return packet(0x10, body)
}

func publishPacket(topic string, id uint16, payload []byte) []byte {
	body := append(str(topic), byte(id>>8), byte(id))
	return packet(0x32, append(body, payload...)) // QoS 1
}

// TestBrokerLogsNoPacketsOrCredentials: a second CONNECT on an open
// session and refused publishes reach the log as one line per refusal with
// reason and client id, rate-limited, without the password (plain or
// base64) or the payload (audit: both were logged, ~82 KB per reconnect).
func TestBrokerLogsNoPacketsOrCredentials(t *testing.T) {
	logs := &syncBuf{}
	b, err := Start(Options{Listen: "127.0.0.1:0", Prefix: "tawsil/v1", Auth: oneDevice{},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const gps = "GPS-33.5850,-7.6330-SECRET-PAYLOAD"
	session := func(packets ...[]byte) {
		t.Helper()
		conn, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		for _, p := range packets {
			if _, err := conn.Write(p); err != nil {
				break
			}
		}
		_, _ = io.Copy(io.Discard, conn) // until the broker closes it
	}
	payload := []byte(strings.Repeat(gps, 100))
	for round := 0; round < 20; round++ {
		login := connectPacket("dev-c1", "c1", devicePassword)
		session(login, login)                                                  // a second CONNECT on an open session
		session(login, publishPacket("tawsil/v1/couriers/c2/pos", 1, payload)) // another courier's topic
		session(connectPacket("dev-c1", "c1", devicePassword+"-wrong"))        // a wrong password
	}
	time.Sleep(100 * time.Millisecond) // the broker logs the last disconnect after closing
	out := logs.String()
	for _, secret := range []string{devicePassword, base64.StdEncoding.EncodeToString([]byte(devicePassword)), "SECRET-PAYLOAD",
		base64.StdEncoding.EncodeToString([]byte(gps))[:20], "couriers/c2/pos"} {
		if strings.Contains(out, secret) {
			t.Fatalf("broker log holds %q:\n%.2000s", secret, out)
		}
	}
	if !strings.Contains(out, `"msg":"mqtt refused"`) || !strings.Contains(out, `"reason":"publish"`) || !strings.Contains(out, `"reason":"connect"`) ||
		!strings.Contains(out, `"client":"dev-c1"`) {
		t.Fatalf("refusals not logged with reason and client id:\n%.3000s", out)
	}
	// 20 rounds of refusals within the interval: one line per kind and client.
	if n := strings.Count(out, `"reason":"publish"`); n != 1 {
		t.Errorf("%d publish refusal lines, want 1 (rate-limited)", n)
	}
	if len(out) > 16<<10 {
		t.Errorf("%d bytes of log for 40 hostile connections:\n%.3000s", len(out), out)
	}
}

// TestLimiter: one line per key per interval, then the count suppressed.
func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(10*time.Second, func() time.Time { return now })
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("first line suppressed")
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("line within the interval let through")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another key suppressed")
	}
	now = now.Add(10 * time.Second)
	if ok, n := l.allow("a"); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed; want true, 5", ok, n)
	}
}
