package delivery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// fakeHosts stands in for the hosts file and DNS: the names a registration
// may give, mapped to what a resolver on the machine would answer.
func fakeHosts(_ context.Context, host string) ([]net.IPAddr, error) {
	switch host {
	case "intranet.example.ma", "runsc": // a hosts-file entry for loopback
		return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
	case "mixed.example.ma":
		return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}, {IP: net.ParseIP("10.0.0.5")}}, nil
	case "nat64.example.ma":
		return []net.IPAddr{{IP: net.ParseIP("64:ff9b::7f00:1")}}, nil
	case "scoped.example.ma":
		return []net.IPAddr{{IP: net.ParseIP("fe80::1"), Zone: "lo"}}, nil
	case "hooks.example.ma":
		return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestWebhookAddressPolicy: the one policy refuses every spelling of a
// non-public address the audit registered (and the forms delivery let
// through: ::a.b.c.d, 64:ff9b::/96, 0.0.0.0/8), at registration and at
// delivery alike.
func TestWebhookAddressPolicy(t *testing.T) {
	refused := []string{
		"localhost", "LOCALHOST", "localhost.", "LocalHost.", "foo.localhost", "ip6-localhost",
		"intranet.example.ma", "runsc", "mixed.example.ma", "nat64.example.ma", "scoped.example.ma",
		"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "0x7f.1", "017700000001",
		"10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1",
		"0.0.0.0", "0.0.0.1", "0.1.2.3", "255.255.255.255", "240.0.0.1", "224.0.0.1",
		"[::1]", "::1", "[::]", "[fe80::1%lo]", "fe80::1%25lo", "fe80::1", "[fc00::1]", "fd00::1",
		"[::127.0.0.1]", "::7f00:1", "[::ffff:127.0.0.1]", "::ffff:10.0.0.1",
		"64:ff9b::127.0.0.1", "64:ff9b::a00:1", "64:ff9b::8.8.8.8", "2002:7f00:1::1", "2001::1", "ff02::1",
		"1.2.3.4.5", "example.123",
	}
	allowed := []string{"8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "hooks.example.ma", "unknown.example.ma", "ip6-foo.example.ma"}
	w := NewWebhooks(nil, false, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	w.lookup = fakeHosts
	for _, h := range refused {
		if err := w.checkTarget(context.Background(), h); err == nil {
			t.Errorf("registration accepted %q", h)
		}
		if _, err := resolveWebhook(context.Background(), fakeHosts, h); err == nil {
			t.Errorf("delivery would dial %q", h)
		}
	}
	for _, h := range allowed {
		if err := w.checkTarget(context.Background(), h); err != nil {
			t.Errorf("registration refused %q: %v", h, err)
		}
	}
	// Delivery dials only what it checked, and never a name that does not resolve.
	if _, err := resolveWebhook(context.Background(), fakeHosts, "unknown.example.ma"); err == nil {
		t.Error("delivery resolved an unknown name")
	}
	addrs, err := resolveWebhook(context.Background(), fakeHosts, "hooks.example.ma")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "93.184.216.34" {
		t.Fatalf("hooks.example.ma = %v, %v", addrs, err)
	}
	// The URL forms go through Register to the same check.
	for _, u := range []string{"https://LOCALHOST/h", "https://localhost./h", "https://2130706433/h", "https://0x7f.0.0.1/h",
		"https://[fe80::1%25lo]/h", "https://[::127.0.0.1]/h", "https://[64:ff9b::7f00:1]/h", "https://0.0.0.1/h", "https://runsc/h",
		"https://hooks.example.ma/\u202eh", "https://hooks.example.ma/\u200bh"} {
		if _, err := w.Register(context.Background(), "m1", u, []string{"order.delivered"}); !errors.Is(err, ErrWebhook) {
			t.Errorf("Register(%s) = %v, want ErrWebhook", u, err)
		}
	}
}

// TestWebhookDeliveryRefusesEmbeddedForms dials through the delivery
// client's own transport: the forms the audit found open at delivery are
// refused by the policy, before any connection is tried.
func TestWebhookDeliveryRefusesEmbeddedForms(t *testing.T) {
	w := NewWebhooks(nil, false, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	dial := w.client.Transport.(*http.Transport).DialContext
	for _, addr := range []string{"[::127.0.0.1]:9", "[::a00:1]:9", "[64:ff9b::7f00:1]:9", "[64:ff9b::a9fe:a9fe]:9", "0.0.0.1:9",
		"0.1.2.3:9", "[::ffff:127.0.0.1]:9", "127.0.0.1:9", "[fe80::1%lo]:9", "localhost.:9", "LOCALHOST:9", "2130706433:9"} {
		conn, err := dial(context.Background(), "tcp", addr)
		if err == nil {
			_ = conn.Close()
			t.Errorf("delivery dialled %s", addr)
			continue
		}
		if !strings.Contains(err.Error(), "public") {
			t.Errorf("delivery to %s not refused by the policy (it tried to connect): %v", addr, err)
		}
	}
}
