// Package netguard is the outbound HTTP client for requests whose target a
// user or a remote server chooses (URL previews, later federation and push
// gateways). It refuses to connect to private, loopback, link-local and
// other non-public addresses unless the operator allows them, so a user
// cannot make the server probe its own network (SSRF).
//
// The check runs on the address actually dialled, after DNS resolution, so
// a public name that resolves to 127.0.0.1 (or re-resolves to it later: DNS
// rebinding) is refused as surely as a literal 127.0.0.1; every redirect
// hop dials through the same check.
package netguard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// MaxRedirects is how many redirects a client follows before giving up.
const MaxRedirects = 5

// ErrTooLarge is returned when reading a response body past its limit.
var ErrTooLarge = errors.New("netguard: response body too large")

// BlockedError is returned (wrapped in the client's *url.Error) when a
// connection would reach an address the guard refuses.
type BlockedError struct {
	Addr netip.Addr
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("netguard: refusing to connect to non-public address %s", e.Addr)
}

// IsBlocked reports whether err is a connection the guard refused.
func IsBlocked(err error) bool {
	var b *BlockedError
	return errors.As(err, &b)
}

// blockedPrefixes are the ranges that are not the public internet: Go's
// netip predicates cover loopback, RFC 1918 / ULA, link-local, multicast and
// unspecified; these add the rest of the IANA special-purpose registries
// that Synapse's default ip_range_blacklist also refuses.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (shared address space)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255 broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated), :: and ::1 too
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// Embedded IPv4 forms: the IPv4 address inside is what the packet reaches.
var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	nat64v6 = netip.MustParsePrefix("64:ff9b:1::/48") // local-use NAT64: a private network by definition
)

// Blocked reports whether ip is an address outbound requests must not reach
// unless private addresses are allowed: anything that is not a public
// unicast address, including IPv4-mapped, NAT64 and 6to4 spellings of one.
func Blocked(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		switch b := ip.As16(); {
		case nat64.Contains(ip):
			return Blocked(netip.AddrFrom4([4]byte(b[12:16])))
		case sixTo4.Contains(ip):
			return Blocked(netip.AddrFrom4([4]byte(b[2:6])))
		case nat64v6.Contains(ip):
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guard checks, after DNS resolution, the address about to be dialled;
// addresses in allowed pass even when Blocked.
type guard struct{ allowed []netip.Prefix }

func (g guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("netguard: dial %s %q: %w", network, address, err)
	}
	ip := ap.Addr().WithZone("").Unmap()
	if !Blocked(ip) {
		return nil
	}
	for _, p := range g.allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	return &BlockedError{Addr: ap.Addr()}
}

// NewTransport returns an HTTP transport whose connections are checked by
// the guard (unless allowPrivate), for callers that need to wrap or tune
// one (federation's own TLS settings). It never uses a proxy from the
// environment: a proxy would resolve the name itself, past the guard.
func NewTransport(allowPrivate bool, timeout time.Duration) *http.Transport {
	if allowPrivate {
		return newTransport(nil, timeout)
	}
	return newTransport(&guard{}, timeout)
}

func newTransport(g *guard, timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if g != nil {
		d.Control = g.control
	}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           20,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(timeout, 10*time.Second),
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// NewClient returns an HTTP client for untrusted targets: every connection,
// redirects included, goes through the guard unless allowPrivate; at most
// MaxRedirects redirects are followed, only to http and https; a whole
// request, body included, must finish within timeout; and a response body
// longer than maxBody (when > 0) fails with ErrTooLarge, before reading
// when Content-Length says so and otherwise at the byte past the limit.
func NewClient(allowPrivate bool, timeout time.Duration, maxBody int64) *http.Client {
	if allowPrivate {
		return newClient(nil, timeout, maxBody)
	}
	return newClient(&guard{}, timeout, maxBody)
}

// NewClientAllowing is NewClient with the guard on, except for the
// non-public ranges in allowed (an operator's internal wiki, say; Synapse's
// ip_range_whitelist).
func NewClientAllowing(allowed []netip.Prefix, timeout time.Duration, maxBody int64) *http.Client {
	return newClient(&guard{allowed: allowed}, timeout, maxBody)
}

func newClient(g *guard, timeout time.Duration, maxBody int64) *http.Client {
	var rt http.RoundTripper = newTransport(g, timeout)
	if maxBody > 0 {
		rt = limitTransport{next: rt, max: maxBody}
	}
	return &http.Client{
		Transport: rt,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return fmt.Errorf("netguard: stopped after %d redirects", MaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("netguard: redirect to unsupported scheme %q", req.URL.Scheme)
			}
			return nil
		},
	}
}

// limitTransport bounds response bodies.
type limitTransport struct {
	next http.RoundTripper
	max  int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, ErrTooLarge
	}
	resp.Body = LimitBody(resp.Body, t.max)
	return resp, nil
}

// LimitBody returns rc reading at most max bytes: a read past them fails
// with ErrTooLarge rather than quietly ending, so a caller never mistakes a
// truncated body for a whole one. Closing it closes rc.
func LimitBody(rc io.ReadCloser, max int64) io.ReadCloser {
	return &limitedBody{rc: rc, left: max}
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly max bytes from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
