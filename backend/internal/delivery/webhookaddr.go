package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The webhook address policy, one for registration and for delivery: a
// webhook may reach only a public unicast address on the internet. Every
// spelling of a private one is refused: localhost in any case or with a
// trailing dot, names the hosts file (or DNS) maps to a private address,
// numeric IPv4 forms other than the dotted quad (decimal 2130706433,
// octal 0177.0.0.1, hex 0x7f.1, short 127.1), scoped IPv6 ([fe80::1%lo]),
// IPv4 embedded in IPv6 (::ffff:a.b.c.d, ::a.b.c.d, NAT64 64:ff9b::/96,
// 6to4, Teredo) and the special IPv4 blocks (0.0.0.0/8, CGNAT, benchmark,
// reserved, broadcast).

var errWebhookAddr = errors.New("not a public internet address")

// nonPublic are the blocks refused besides what netip's predicates cover.
var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"; 0.0.0.0 reaches the local host
		"100.64.0.0/10",   // carrier-grade NAT
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"240.0.0.0/4",     // reserved, and 255.255.255.255
		"::/96",           // IPv4-compatible (::a.b.c.d), deprecated
		"64:ff9b::/96",    // NAT64 well-known prefix
		"64:ff9b:1::/48",  // NAT64 local-use
		"100::/64",        // discard
		"2001::/32",       // Teredo
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4
		"fec0::/10",       // site-local (deprecated)
		"5f00::/16",       // SRv6 SIDs
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// publicAddr reports whether a may receive webhooks.
func publicAddr(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() ||
		a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// webhookHost checks a URL host name or literal before any lookup. It
// returns the address for a literal (ok true), or the name to resolve.
func webhookHost(host string) (addr netip.Addr, literal bool, err error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" || strings.HasSuffix(host, "..") {
		return netip.Addr{}, false, errWebhookAddr
	}
	switch h {
	case "localhost", "localhost.localdomain", "localdomain", "ip6-localhost", "ip6-loopback":
		return netip.Addr{}, false, errWebhookAddr
	}
	if strings.HasSuffix(h, ".localhost") {
		return netip.Addr{}, false, errWebhookAddr
	}
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		if !publicAddr(a) {
			return netip.Addr{}, false, errWebhookAddr
		}
		return a, true, nil
	}
	if strings.ContainsAny(h, "%[]") {
		return netip.Addr{}, false, errWebhookAddr
	}
	// Anything a C resolver (inet_aton) would read as an IPv4 address is
	// refused unless it is the plain dotted quad parsed above.
	if looksNumeric(h) {
		return netip.Addr{}, false, errWebhookAddr
	}
	return netip.Addr{}, false, nil
}

// looksNumeric reports whether every label of h is a decimal, octal or hex
// number (inet_aton accepts 1 to 4 such parts), or the last label is
// all digits (no top-level domain is numeric).
func looksNumeric(h string) bool {
	labels := strings.Split(h, ".")
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	if len(labels) > 4 {
		return false
	}
	for _, l := range labels {
		if l == "" {
			return false
		}
		if _, err := strconv.ParseUint(l, 0, 64); err != nil {
			if !(strings.HasPrefix(l, "0x") && strings.Trim(l[2:], "0123456789abcdef") == "") {
				return false
			}
		}
	}
	return true
}

// resolveWebhook applies the policy to a host and returns the addresses to
// dial: every address a name resolves to must be public.
func resolveWebhook(ctx context.Context, lookup func(ctx context.Context, host string) ([]net.IPAddr, error), host string) ([]netip.Addr, error) {
	a, literal, err := webhookHost(host)
	if err != nil {
		return nil, err
	}
	if literal {
		return []netip.Addr{a}, nil
	}
	// Look the name up without its trailing dot: the hosts file spells
	// names without it ("runsc." must find "runsc").
	ips, err := lookup(ctx, strings.ToLower(strings.TrimSuffix(host, ".")))
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("webhook host %s has no address", host)
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			return nil, errWebhookAddr
		}
		a = a.WithZone(ip.Zone)
		if !publicAddr(a) {
			return nil, fmt.Errorf("webhook host %s resolves to %s: %w", host, a, errWebhookAddr)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}
