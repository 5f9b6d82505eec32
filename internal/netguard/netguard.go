// Package netguard decides which addresses Courier's outgoing webhook
// connections may reach, so that a sink definition cannot turn the worker
// into a client of the networks it runs in (loopback, private and
// link-local ranges, the cloud metadata address). The check runs on the
// address actually dialled, for every connection, after DNS resolution:
// a name that resolves to a private address, or changes between lookups,
// is caught as surely as a literal one.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
)

// ErrNotAllowed is wrapped by every refusal.
var ErrNotAllowed = errors.New("destination not allowed")

// refusedRange is one range refused by default.
type refusedRange struct {
	prefix netip.Prefix
	what   string
}

func mustRanges(pairs ...string) []refusedRange {
	out := make([]refusedRange, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, refusedRange{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// refused lists what no webhook reaches unless allowed: every range that
// is not a public unicast destination.
var refused = mustRanges(
	"0.0.0.0/8", "unspecified (this network)",
	"10.0.0.0/8", "private (RFC 1918)",
	"100.64.0.0/10", "carrier-grade NAT (RFC 6598)",
	"127.0.0.0/8", "loopback",
	"169.254.0.0/16", "link-local (cloud metadata lives at 169.254.169.254)",
	"172.16.0.0/12", "private (RFC 1918)",
	"192.0.0.0/24", "IETF protocol assignments",
	"192.168.0.0/16", "private (RFC 1918)",
	"198.18.0.0/15", "benchmarking (RFC 2544)",
	"224.0.0.0/4", "multicast",
	"240.0.0.0/4", "reserved (255.255.255.255 is broadcast)",
	"::/128", "unspecified",
	"::1/128", "loopback",
	"100::/64", "discard (RFC 6666)",
	"64:ff9b:1::/48", "local-use NAT64 (RFC 8215)",
	"fc00::/7", "unique local",
	"fe80::/10", "link-local",
	"fec0::/10", "site-local",
	"ff00::/8", "multicast",
)

// IPv6 ranges that carry an IPv4 address.
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// Policy is what webhooks may reach: public unicast addresses, and the
// networks in Allow whatever they are.
type Policy struct {
	Allow     []netip.Prefix
	HTTPSOnly bool
}

// ParseAllow reads an allow list of CIDR prefixes (a bare address is a
// single host).
func ParseAllow(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q: want a network such as 10.20.0.0/16 or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Check returns nil when addr may be dialled, else an error wrapping
// ErrNotAllowed that says which range refused it.
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	if p.allowed(addr) {
		return nil
	}
	if what := refusedAs(addr); what != "" {
		return fmt.Errorf("%w: %s is %s; add it to webhook_allow to deliver there", ErrNotAllowed, addr, what)
	}
	// An IPv6 form that embeds an IPv4 address reaches that address.
	if v4, form, ok := embeddedIPv4(addr); ok {
		if p.allowed(v4) {
			return nil
		}
		if what := refusedAs(v4); what != "" {
			return fmt.Errorf("%w: %s is the %s form of %s, which is %s; add it to webhook_allow to deliver there", ErrNotAllowed, addr, form, v4, what)
		}
	}
	return nil
}

func (p Policy) allowed(a netip.Addr) bool {
	for _, pr := range p.Allow {
		if pr.Contains(a) || (a.Is4In6() && pr.Contains(a.Unmap())) {
			return true
		}
	}
	return false
}

func refusedAs(a netip.Addr) string {
	for _, r := range refused {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	return ""
}

// embeddedIPv4 finds the IPv4 address in IPv4-mapped (::ffff:a.b.c.d),
// IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4
// (2002:aabb:ccdd::) addresses.
func embeddedIPv4(a netip.Addr) (netip.Addr, string, bool) {
	if !a.Is6() {
		return netip.Addr{}, "", false
	}
	if a.Is4In6() {
		return a.Unmap(), "IPv4-mapped", true
	}
	b := a.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case ipv4Compatible.Contains(a):
		return v4(12), "IPv4-compatible", true
	case nat64.Contains(a):
		return v4(12), "NAT64", true
	case sixToFour.Contains(a):
		return v4(2), "6to4", true
	}
	return netip.Addr{}, "", false
}

// CheckURL checks what a URL shows before any connection: its scheme
// against HTTPSOnly and a literal IP host against the ranges. A name is
// checked when it is dialled.
func (p Policy) CheckURL(u *url.URL) error {
	if p.HTTPSOnly && u.Scheme != "https" {
		return fmt.Errorf("%w: webhook_https_only is set and the URL is %s://", ErrNotAllowed, u.Scheme)
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a)
	}
	return nil
}

// Guard holds the policy a node's webhooks dial under; it changes live
// when an operator changes the setting.
type Guard struct{ p atomic.Pointer[Policy] }

// NewGuard returns a Guard with p.
func NewGuard(p Policy) *Guard {
	g := &Guard{}
	g.Set(p)
	return g
}

// Set replaces the policy for connections made from now on.
func (g *Guard) Set(p Policy) { g.p.Store(&p) }

// Policy is the current policy.
func (g *Guard) Policy() Policy { return *g.p.Load() }

// Control is a net.Dialer Control hook: it runs for every connection,
// with the resolved address about to be dialled.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotAllowed, address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s is not an IP address", ErrNotAllowed, host)
	}
	return g.Policy().Check(a)
}

// Loopback is this machine's networks, for a policy that allows local
// receivers (the quick start, tests).
func Loopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}
