// Package egress is how ctmflow reaches URLs that staff configure: an
// HTTP client that refuses, at dial time, every address inside a private
// network or the cloud's metadata service.
//
// A trigger's destination is a URL anyone with the API token can set. Left
// unguarded, it would let them make the worker fetch the cloud metadata
// service (and its credentials) or poke services on the internal network
// (server-side request forgery). The check runs on the IP address the
// dialer is about to connect to, after DNS resolution, so a hostname that
// resolves to a private address, or re-resolves to one later (DNS
// rebinding), is refused all the same. Redirects are refused too: a
// public URL must not bounce the request inward.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every error for an address the guard refuses.
var ErrRefused = errors.New("destination address not allowed")

// ErrRedirect is wrapped by the error of a request answered by a redirect.
var ErrRedirect = errors.New("destination answered with a redirect, which is not followed")

// blocked lists what no destination may be, with the reason an error
// gives. The IPv6 forms that embed an IPv4 address are decoded and the
// embedded address checked instead; see embeddedIPv4.
var blocked = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	// IPv4-compatible addresses (deprecated) reach IPv4 hosts on some
	// stacks; nothing legitimate uses them.
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (cloud metadata)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Well-known prefixes whose addresses carry an IPv4 address inside.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Guard decides which addresses outbound requests may reach.
type Guard struct {
	allow []netip.Prefix
}

// NewGuard returns a guard that refuses private and special addresses
// except those inside allow: on-premise setups and tests name the private
// networks their destinations live in.
func NewGuard(allow []netip.Prefix) *Guard {
	return &Guard{allow: allow}
}

// Check returns nil when addr may be reached, or an error wrapping
// ErrRefused that says why not.
func (g *Guard) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	if g.allowed(addr) {
		return nil
	}
	// An IPv4 address written as IPv6 (::ffff:10.0.0.1, 64:ff9b::a00:1,
	// 2002:a00:1::) reaches the IPv4 host: judge that host.
	if v4, ok := embeddedIPv4(addr); ok {
		if g.allowed(v4) {
			return nil
		}
		if why := blockedReason(v4); why != "" {
			return fmt.Errorf("%w: %s embeds %s, which is %s", ErrRefused, addr, v4, why)
		}
		return nil
	}
	if why := blockedReason(addr); why != "" {
		return fmt.Errorf("%w: %s is %s", ErrRefused, addr, why)
	}
	return nil
}

func (g *Guard) allowed(addr netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func blockedReason(addr netip.Addr) string {
	for _, b := range blocked {
		if b.prefix.Contains(addr) {
			return b.why
		}
	}
	return ""
}

// embeddedIPv4 returns the IPv4 address that an IPv4-mapped, NAT64
// (RFC 6052 well-known prefix) or 6to4 address stands for.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if addr.Is4In6() {
		return addr.Unmap(), true
	}
	if !addr.Is6() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// CheckHost judges a URL's host before any request: an IP literal is
// checked at once, so that a rule pointing at one is refused when it is
// saved rather than on its first delivery. A hostname passes here; its
// addresses are checked when dialled.
func (g *Guard) CheckHost(host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return g.Check(addr)
}

// control is the dialer's last word before connecting: address is the
// resolved ip:port.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read dial address %q", ErrRefused, address)
	}
	return g.Check(ap.Addr())
}

// Options shape a client.
type Options struct {
	// Timeout bounds a whole request, from dial to the end of the body.
	// Default 10s.
	Timeout time.Duration
}

// NewClient returns an HTTP client whose every connection passes g. It
// ignores proxy settings from the environment (a proxy would dial on our
// behalf, out of the guard's sight) and follows no redirect.
func NewClient(g *Guard, opts Options) *http.Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	dialer := &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   g.control,
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: opts.Timeout,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return ErrRedirect
		},
	}
}

// ParseAllowlist reads comma-separated CIDRs ("10.1.0.0/16,127.0.0.1/32");
// a bare address stands for itself alone.
func ParseAllowlist(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", item)
		}
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}
