package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"hearth/server/netguard"
	"hearth/server/pdu"
)

// DefaultPort is where a server name without a port is reached.
const DefaultPort = 8448

// maxResponse bounds a federation response body; the largest the spec
// produces (send_join state, /state) stay well under it for the rooms a
// small server joins.
const maxResponse = 64 << 20

// requestTimeout bounds one outbound federation request, body included.
const requestTimeout = 60 * time.Second

// Error is a federation response with a status other than 2xx.
type Error struct {
	Status  int
	Code    string // the Matrix errcode, if the body had one
	Message string
	// RetryAfterMS is a rate limit's retry_after_ms, if the body had one.
	RetryAfterMS int64
}

func (e *Error) Error() string {
	return fmt.Sprintf("federation: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Client makes federation requests signed as one server (X-Matrix). It
// verifies every certificate (against the system roots plus any trusted
// extra CA) and refuses private addresses unless allowed.
type Client struct {
	serverName string
	keyID      string
	key        ed25519.PrivateKey
	http       *http.Client
	resolver   *Resolver
	// redirecting fetches plain URLs a server pointed us to (a media
	// Location), following their redirects.
	redirecting *http.Client
}

// ClientConfig configures a Client.
type ClientConfig struct {
	ServerName string
	KeyID      string // "ed25519:..."
	Key        ed25519.PrivateKey
	// RootCAs verifies peers' certificates; nil for the system roots.
	RootCAs *x509.CertPool
	// AllowPrivate lets requests reach loopback and private addresses.
	AllowPrivate bool
	// LookupSRV looks up SRV records; nil for net.DefaultResolver's.
	LookupSRV LookupSRVFunc
	// DialContext, when set, replaces the dialer, address guard included:
	// for tests that map names to loopback listeners.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewClient returns a client for cfg.
func NewClient(cfg ClientConfig) *Client {
	tr := netguard.NewTransport(cfg.AllowPrivate, requestTimeout)
	tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if cfg.DialContext != nil {
		tr.DialContext = cfg.DialContext
	}
	r := newResolver(tr, cfg.LookupSRV)
	ft := &fedTransport{base: tr, resolver: r}
	return &Client{
		serverName: cfg.ServerName, keyID: cfg.KeyID, key: cfg.Key, resolver: r,
		redirecting: &http.Client{
			Transport: tr,
			Timeout:   requestTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxMediaRedirects || (req.URL.Scheme != "https" && req.URL.Scheme != "http") {
					return errors.New("federation: too many or bad redirects")
				}
				return nil
			},
		},
		http: &http.Client{
			Transport: ft,
			Timeout:   requestTimeout,
			// Federation endpoints do not redirect; following one would
			// send a signed request somewhere it was not signed for.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// CertPool returns the system roots plus the PEM certificates in file
// (--trust-ca); "" returns nil, the system roots alone.
func CertPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("trusted CA: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("trusted CA: no PEM certificate in %s", file)
	}
	return pool, nil
}

// ServerName returns the name the client signs requests as.
func (c *Client) ServerName() string { return c.serverName }

// HTTPClient returns the underlying HTTP client, with the same TLS trust
// and address guard, for requests that need no signature.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Resolve returns where requests for serverName go (spec: "Resolving
// server names").
func (c *Client) Resolve(ctx context.Context, serverName string) (Resolution, error) {
	return c.resolver.Resolve(ctx, serverName)
}

// NewRequest returns a request to destination for uri (path and query,
// already escaped), signed with an X-Matrix header when the client has a
// key. content is the JSON body, or nil. The URL's host is destination
// itself: sending the request resolves it, and sets the Host header and
// the certificate name the resolution says.
func (c *Client) NewRequest(ctx context.Context, method, destination, uri string, content []byte) (*http.Request, error) {
	if _, _, _, err := parseServerName(destination); err != nil {
		return nil, err
	}
	var body io.Reader
	if content != nil {
		body = bytes.NewReader(content)
	}
	req, err := http.NewRequestWithContext(ctx, method, fedScheme+"://"+destination+uri, body)
	if err != nil {
		return nil, err
	}
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != nil {
		sig, err := pdu.SignRequest(c.key, method, uri, c.serverName, destination, content)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`,
			c.serverName, destination, c.keyID, sig))
	}
	return req, nil
}

// Do sends req and decodes a 2xx JSON response into out (which may be
// nil); any other status is an *Error.
func (c *Client) Do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxResponse {
		return netguard.ErrTooLarge
	}
	raw, err := io.ReadAll(netguard.LimitBody(resp.Body, maxResponse))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Status: resp.StatusCode}
		var m struct {
			Errcode      string  `json:"errcode"`
			Error        string  `json:"error"`
			RetryAfterMS float64 `json:"retry_after_ms"`
		}
		if json.Unmarshal(raw, &m) == nil {
			e.Code, e.Message, e.RetryAfterMS = m.Errcode, m.Error, int64(m.RetryAfterMS)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw2, ok := out.(*[]byte); ok {
		*raw2 = raw
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("federation: %s %s: bad response: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// Call sends a signed request with in (nil for none) as its JSON body and
// decodes the response into out; out may be a *[]byte for the raw body.
func (c *Client) Call(ctx context.Context, method, destination, uri string, in, out any) error {
	var content []byte
	if in != nil {
		var err error
		if content, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := c.NewRequest(ctx, method, destination, uri, content)
	if err != nil {
		return err
	}
	return c.Do(req, out)
}

// IsStatus reports whether err is a federation response with status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
