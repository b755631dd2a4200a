package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"hearth/server/netguard"
)

// Well-known caching (spec: "Resolving server names" step 3, with
// Synapse's figures): a sensible default, a ceiling, a floor so a
// "no-store" server is not asked before every request, and how long a
// failed or invalid answer stands.
const (
	wellKnownDefault  = 24 * time.Hour
	wellKnownMax      = 48 * time.Hour
	wellKnownMin      = 5 * time.Minute
	wellKnownFailure  = time.Hour
	wellKnownMaxBody  = 50 << 10
	wellKnownTimeout  = 10 * time.Second
	wellKnownMaxCache = 10_000 // server names; past it expired answers are dropped first
)

// fedScheme marks a request URL whose host is a server name, resolved by
// fedTransport when the request is sent.
const fedScheme = "matrix-federation"

// LookupSRVFunc looks up SRV records as net.Resolver.LookupSRV does.
type LookupSRVFunc func(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)

// Resolution is where requests for a server name go.
type Resolution struct {
	// Addr is the host:port to dial; the host may still be a DNS name,
	// resolved (and checked by the address guard) when dialling.
	Addr string
	// Host is the HTTP Host header.
	Host string
	// ServerName is the name (or IP address) the peer's certificate must
	// be valid for.
	ServerName string
}

// Resolver resolves server names as the spec's "Resolving server names"
// says: IP literal, explicit port, .well-known delegation (cached), SRV
// records, then port 8448.
type Resolver struct {
	http      *http.Client // for .well-known: guarded, trusting our CAs
	lookupSRV LookupSRVFunc
	now       func() time.Time

	mu    sync.Mutex // guards cache and srvCache
	cache map[string]*wellKnown
	// srvCache holds each hostname's SRV resolution: every new
	// connection resolves its server name, and an SRV query a resolver
	// cannot answer may take its whole timeout (5 s with Go's defaults)
	// each time.
	srvCache map[string]srvAnswer
}

// srvAnswer is one hostname's cached SRV resolution.
type srvAnswer struct {
	res     Resolution
	expires time.Time
}

// srvCachePeriod is how long an SRV resolution, found or not, is kept:
// Go's resolver does not give the records' TTL.
const srvCachePeriod = 10 * time.Minute

// wellKnown is one hostname's cached .well-known answer; done is closed
// once server and expires are set, so concurrent resolutions of a name
// share one fetch.
type wellKnown struct {
	done    chan struct{}
	server  string // the valid m.server, or "" when there is none
	expires time.Time
}

// newResolver returns a resolver fetching .well-known through tr.
func newResolver(tr http.RoundTripper, lookupSRV LookupSRVFunc) *Resolver {
	if lookupSRV == nil {
		lookupSRV = net.DefaultResolver.LookupSRV
	}
	return &Resolver{
		http: &http.Client{
			Transport: tr,
			Timeout:   wellKnownTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) > netguard.MaxRedirects {
					return fmt.Errorf("federation: .well-known: stopped after %d redirects", netguard.MaxRedirects)
				}
				// The delegation is only as trustworthy as the channel
				// it came over.
				if req.URL.Scheme != "https" {
					return fmt.Errorf("federation: .well-known: redirect to %s, not https", req.URL.Scheme)
				}
				return nil
			},
		},
		lookupSRV: lookupSRV,
		now:       time.Now,
		cache:     make(map[string]*wellKnown),
		srvCache:  make(map[string]srvAnswer),
	}
}

// Resolve returns where requests for serverName go.
func (r *Resolver) Resolve(ctx context.Context, serverName string) (Resolution, error) {
	host, port, ip, err := parseServerName(serverName)
	if err != nil {
		return Resolution{}, err
	}
	if ip || port != "" { // steps 1 and 2
		return direct(serverName, host, port), nil
	}
	delegated, err := r.delegation(ctx, host) // step 3
	if err != nil {
		return Resolution{}, err
	}
	if delegated == "" { // steps 4 to 6
		return r.srv(ctx, host), nil
	}
	dhost, dport, dip, _ := parseServerName(delegated) // validated when fetched
	if dip || dport != "" {                            // steps 3.1 and 3.2
		return direct(delegated, dhost, dport), nil
	}
	return r.srv(ctx, dhost), nil // steps 3.3 to 3.5
}

// direct is the resolution of an IP literal or a name with a port: the
// address itself, the whole name as Host and the host for TLS.
func direct(name, host, port string) Resolution {
	if port == "" {
		port = strconv.Itoa(DefaultPort)
	}
	return Resolution{Addr: net.JoinHostPort(host, port), Host: name, ServerName: host}
}

// srv resolves hostname through its SRV records, the registered service
// first and then the deprecated one, or else port 8448. Host and
// certificate stay hostname's whatever the target: DNS is not secure, so
// the target proves it may serve hostname by its certificate.
func (r *Resolver) srv(ctx context.Context, hostname string) Resolution {
	r.mu.Lock()
	a, ok := r.srvCache[hostname]
	r.mu.Unlock()
	if ok && r.now().Before(a.expires) {
		return a.res
	}
	res := r.lookupSRVs(ctx, hostname)
	if ctx.Err() != nil {
		return res // the lookups may have been cut short: not an answer to keep
	}
	r.mu.Lock()
	if len(r.srvCache) >= wellKnownMaxCache {
		now := r.now()
		for name, a := range r.srvCache {
			if !now.Before(a.expires) || len(r.srvCache) >= wellKnownMaxCache {
				delete(r.srvCache, name)
			}
		}
	}
	r.srvCache[hostname] = srvAnswer{res: res, expires: r.now().Add(srvCachePeriod)}
	r.mu.Unlock()
	return res
}

// lookupSRVs is srv without the cache.
func (r *Resolver) lookupSRVs(ctx context.Context, hostname string) Resolution {
	res := Resolution{Addr: net.JoinHostPort(hostname, strconv.Itoa(DefaultPort)), Host: hostname, ServerName: hostname}
	for _, service := range []string{"matrix-fed", "matrix"} {
		// Any failure, not only "no such name", moves on: the next step
		// still ends at a certificate that must be valid for hostname.
		_, addrs, err := r.lookupSRV(ctx, service, "tcp", hostname)
		if err != nil {
			continue
		}
		// LookupSRV sorts by priority and shuffles by weight; a target of
		// "." means the service is decidedly not there (RFC 2782).
		for _, a := range addrs {
			if target := strings.TrimSuffix(a.Target, "."); target != "" && a.Port != 0 {
				res.Addr = net.JoinHostPort(target, strconv.Itoa(int(a.Port)))
				return res
			}
		}
	}
	return res
}

// delegation returns hostname's valid .well-known m.server, or "" when it
// has none, from the cache or else fetched.
func (r *Resolver) delegation(ctx context.Context, hostname string) (string, error) {
	r.mu.Lock()
	if e, ok := r.cache[hostname]; ok {
		select {
		case <-e.done:
			if r.now().Before(e.expires) {
				r.mu.Unlock()
				return e.server, nil
			}
		default:
			r.mu.Unlock()
			select {
			case <-e.done:
				return e.server, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}
	e := &wellKnown{done: make(chan struct{})}
	r.evictLocked()
	r.cache[hostname] = e
	r.mu.Unlock()

	server, ttl := r.fetchWellKnown(ctx, hostname)
	e.server, e.expires = server, r.now().Add(ttl)
	close(e.done)
	return server, nil
}

// evictLocked makes room in a full cache: expired answers go first, then
// any finished ones. r.mu must be held.
func (r *Resolver) evictLocked() {
	if len(r.cache) < wellKnownMaxCache {
		return
	}
	now := r.now()
	for name, e := range r.cache {
		select {
		case <-e.done:
			if !now.Before(e.expires) || len(r.cache) >= wellKnownMaxCache {
				delete(r.cache, name)
			}
		default:
		}
	}
}

// fetchWellKnown fetches https://hostname/.well-known/matrix/server and
// returns its m.server ("" when the answer is missing or invalid) and how
// long to keep that answer.
func (r *Resolver) fetchWellKnown(ctx context.Context, hostname string) (string, time.Duration) {
	// The answer is shared and cached: the caller giving up must not make
	// it a failure for everyone for an hour.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wellKnownTimeout)
	defer cancel()
	u := url.URL{Scheme: "https", Host: hostname, Path: "/.well-known/matrix/server"}
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return "", jitter(wellKnownFailure)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return "", jitter(wellKnownFailure)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength > wellKnownMaxBody {
		return "", jitter(wellKnownFailure)
	}
	raw, err := io.ReadAll(netguard.LimitBody(resp.Body, wellKnownMaxBody))
	if err != nil {
		return "", jitter(wellKnownFailure)
	}
	var body struct {
		Server string `json:"m.server"`
	}
	if json.Unmarshal(raw, &body) != nil {
		return "", jitter(wellKnownFailure)
	}
	if _, _, _, err := parseServerName(body.Server); err != nil {
		return "", jitter(wellKnownFailure)
	}
	ttl, ok := cachePeriod(resp.Header, r.now())
	if !ok {
		return body.Server, jitter(wellKnownDefault)
	}
	return body.Server, min(max(ttl, wellKnownMin), wellKnownMax)
}

// cachePeriod returns how long a response may be cached by its
// Cache-Control max-age (no-store and no-cache meaning not at all) or else
// its Expires; false when neither says.
func cachePeriod(h http.Header, now time.Time) (time.Duration, bool) {
	for _, d := range strings.Split(strings.ToLower(strings.Join(h.Values("Cache-Control"), ",")), ",") {
		d = strings.TrimSpace(d)
		if d == "no-store" || d == "no-cache" {
			return 0, true
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				return time.Duration(min(n, int64(wellKnownMax/time.Second))) * time.Second, true
			}
		}
	}
	if e := h.Get("Expires"); e != "" {
		// An unparsable Expires means already expired (RFC 9111 5.3).
		t, err := http.ParseTime(e)
		if err != nil {
			return 0, true
		}
		return t.Sub(now), true
	}
	return 0, false
}

// jitter spreads d by ±10% so names cached together do not all expire (and
// get fetched again) together.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5)
}

// parseServerName splits a server name (appendix "Server Name": an IPv4
// literal, a bracketed IPv6 literal or a DNS name, then an optional port)
// into its host (IPv6 without brackets) and port ("" when none).
func parseServerName(name string) (host, port string, ip bool, err error) {
	bad := func() (string, string, bool, error) {
		return "", "", false, fmt.Errorf("federation: invalid server name %q", name)
	}
	rest := name
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return bad()
		}
		a, err := netip.ParseAddr(name[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return bad()
		}
		host, ip, rest = name[1:end], true, name[end+1:]
		if rest != "" && rest[0] != ':' {
			return bad()
		}
	} else {
		host, _, _ = strings.Cut(name, ":")
		rest = name[len(host):]
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
			ip = true
		} else if !dnsName(host) {
			return bad()
		}
	}
	if rest != "" {
		port = rest[1:]
		n, err := strconv.Atoi(port)
		if err != nil || len(port) > 5 || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return bad()
		}
	}
	return host, port, ip, nil
}

// dnsName reports whether s is a server name's DNS name: 1 to 255
// characters of letters, digits, '-' and '.'.
func dnsName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// fedTransport sends requests whose URL is fedScheme://<server name>/...
// to where the server name resolves, with that resolution's Host header
// and certificate name; other requests go through base unchanged.
type fedTransport struct {
	base     *http.Transport
	resolver *Resolver

	mu     sync.Mutex // guards byName
	byName map[string]*http.Transport
}

// maxTransports bounds byName; past it the idle connections are closed and
// transports made afresh.
const maxTransports = 512

// RoundTrip implements http.RoundTripper.
func (t *fedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != fedScheme {
		return t.base.RoundTrip(req)
	}
	res, err := t.resolver.Resolve(req.Context(), req.URL.Host)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "https", res.Addr, res.Host
	return t.forName(res.ServerName).RoundTrip(out)
}

// forName returns the transport verifying certificates for serverName.
// One per name keeps connection pools apart: a connection verified for
// one name must not carry a request for another that resolved to the same
// address.
func (t *fedTransport) forName(serverName string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.byName[serverName]; ok {
		return tr
	}
	if t.byName == nil || len(t.byName) >= maxTransports {
		for _, tr := range t.byName {
			tr.CloseIdleConnections()
		}
		t.byName = make(map[string]*http.Transport)
	}
	tr := t.base.Clone()
	tr.TLSClientConfig.ServerName = serverName
	t.byName[serverName] = tr
	return tr
}

// CloseIdleConnections closes the idle connections of every transport.
func (t *fedTransport) CloseIdleConnections() {
	t.base.CloseIdleConnections()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.byName {
		tr.CloseIdleConnections()
	}
}
