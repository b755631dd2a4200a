package servertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hearth/server"
)

// CA is a test certificate authority: federating test servers get
// certificates it signed and trust it for their outbound requests.
type CA struct {
	CertFile, KeyFile string
}

// NewCA writes a fresh CA certificate and key into a temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Hearth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := &CA{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}
	if err := os.WriteFile(ca.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// Start starts a server named "localhost:<port>" with an HTTPS
// federation listener whose certificate the CA signed, trusting the CA
// for outbound federation; opts.Federation and the TLS files are set here.
func (ca *CA) Start(t testing.TB, opts Options) *Server {
	t.Helper()
	cert, key, err := server.MintCertificate(ca.CertFile, ca.KeyFile, "localhost", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Federation, opts.TLSCertFile, opts.TLSKeyFile, opts.TrustCAFile = true, cert, key, ca.CertFile
	return Start(t, opts)
}

// HTTPClient returns an HTTPS client trusting only the CA.
func (ca *CA) HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// Federation starts n servers that federate with each other over
// loopback HTTPS, each with its own data directory.
func Federation(t testing.TB, n int) []*Server {
	t.Helper()
	return FederationWith(t, n, Options{})
}

// FederationWith is Federation with opts for every server.
func FederationWith(t testing.TB, n int, opts Options) []*Server {
	t.Helper()
	ca := NewCA(t)
	out := make([]*Server, n)
	for i := range out {
		out[i] = ca.Start(t, opts)
	}
	return out
}

// ServerName returns the server's name.
func (s *Server) ServerName() string { return s.opts.ServerName }

// Eventually polls cond until it reports true, failing the test with
// cond's last message after timeout: what crosses servers arrives
// asynchronously.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial is the federating servers' outbound dialer: loopback, except to
// servers Partition cut this one off from.
func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		if _, cut := s.cut.Load(port); cut {
			return nil, fmt.Errorf("servertest: the link to %s is cut", addr)
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (s *Server) fedPort() string {
	_, port, _ := net.SplitHostPort(s.fedAddr)
	return port
}

// Partition cuts federation between s and others both ways: requests
// between them fail to connect until Heal.
func (s *Server) Partition(others ...*Server) {
	for _, o := range others {
		s.cut.Store(o.fedPort(), true)
		o.cut.Store(s.fedPort(), true)
	}
	// Kept-alive connections would outlive the cut.
	for _, x := range append(others, s) {
		x.Federation().Client().HTTPClient().CloseIdleConnections()
	}
}

// Heal restores the links Partition cut between s and others, and has
// their queues for each other try again at once, as the first request
// from a peer that is back does in production.
func (s *Server) Heal(others ...*Server) {
	for _, o := range others {
		s.cut.Delete(o.fedPort())
		o.cut.Delete(s.fedPort())
		s.Sender().Retry(o.ServerName())
		o.Sender().Retry(s.ServerName())
	}
}
