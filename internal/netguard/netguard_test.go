package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/internal/netguard"
)

func TestEveryRefusedRangeInEveryForm(t *testing.T) {
	var p netguard.Policy
	for _, c := range []struct{ addr, says string }{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.254", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"fc00::1", "unique local"},
		{"fd12:3456::1", "unique local"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1"},
		{"::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254"},
		{"::ffff:10.0.0.1", "private"},
		{"::127.0.0.1", "IPv4-compatible form of 127.0.0.1"},
		{"::10.0.0.1", "IPv4-compatible"},
		{"64:ff9b::7f00:1", "NAT64 form of 127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254"},
		{"2002:7f00:1::", "6to4 form of 127.0.0.1"},
		{"2002:c0a8:101::1", "6to4 form of 192.168.1.1"},
	} {
		err := p.Check(netip.MustParseAddr(c.addr))
		if !errors.Is(err, netguard.ErrNotAllowed) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want refused as %q", c.addr, err, c.says)
		}
	}
	for _, public := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"} {
		if err := p.Check(netip.MustParseAddr(public)); err != nil {
			t.Errorf("%s (public): %v", public, err)
		}
	}
}

func TestTheAllowListOpensExactlyItsNetworks(t *testing.T) {
	allow, err := netguard.ParseAllow([]string{"127.0.0.1/32", "10.20.0.0/16", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	p := netguard.Policy{Allow: allow}
	for _, ok := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.20.3.4", "::1"} {
		if err := p.Check(netip.MustParseAddr(ok)); err != nil {
			t.Errorf("%s is allowed: %v", ok, err)
		}
	}
	for _, no := range []string{"127.0.0.2", "10.21.0.1", "192.168.0.1", "169.254.169.254"} {
		if err := p.Check(netip.MustParseAddr(no)); !errors.Is(err, netguard.ErrNotAllowed) {
			t.Errorf("%s outside the allow list: %v", no, err)
		}
	}
	if _, err := netguard.ParseAllow([]string{"10.0.0.0/33"}); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
	if _, err := netguard.ParseAllow([]string{"localhost"}); err == nil {
		t.Error("a name accepted as a network")
	}
}

func TestCheckURLRefusesLiteralAddressesAndPlainHTTPWhenAsked(t *testing.T) {
	var p netguard.Policy
	for raw, refused := range map[string]bool{
		"http://127.0.0.1:9000/hook":     true,
		"http://[::1]/hook":              true,
		"http://169.254.169.254/latest":  true,
		"http://[::ffff:10.0.0.1]:80/x":  true,
		"https://hooks.example.com/x":    false, // a name: checked when dialled
		"http://localhost:9000/x":        false,
		"https://203.0.113.7/x":          false,
		"http://[fe80::1%25eth0]:8080/x": true,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CheckURL(u); errors.Is(err, netguard.ErrNotAllowed) != refused {
			t.Errorf("%s: %v, refused %v", raw, err, refused)
		}
	}
	strict := netguard.Policy{HTTPSOnly: true}
	u, _ := url.Parse("http://hooks.example.com/x")
	if err := strict.CheckURL(u); !errors.Is(err, netguard.ErrNotAllowed) || !strings.Contains(err.Error(), "https") {
		t.Errorf("http with https_only: %v", err)
	}
}

// TestTheGuardChecksEveryConnectionAfterResolution dials "localhost"
// (which resolves to a loopback address) through a dialer with the guard:
// refused; allowed once loopback is in the list; and every connection is
// checked, so a policy changed between two dials applies to the second.
func TestTheGuardChecksEveryConnectionAfterResolution(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	g := netguard.NewGuard(netguard.Policy{})
	var checks atomic.Int32
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		checks.Add(1)
		return g.Control(network, address, c)
	}}
	dial := func() error {
		c, err := d.DialContext(context.Background(), "tcp4", net.JoinHostPort("localhost", port))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); !errors.Is(err, netguard.ErrNotAllowed) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("localhost with the default policy: %v, want refused as loopback", err)
	}
	allow, _ := netguard.ParseAllow([]string{"127.0.0.0/8"})
	g.Set(netguard.Policy{Allow: allow})
	for i := range 3 {
		if err := dial(); err != nil {
			t.Fatalf("dial %d with loopback allowed: %v", i, err)
		}
	}
	g.Set(netguard.Policy{})
	if err := dial(); !errors.Is(err, netguard.ErrNotAllowed) {
		t.Errorf("after the allow list was emptied: %v", err)
	}
	if n := checks.Load(); n != 5 {
		t.Errorf("%d checks for 5 connections", n)
	}
}
