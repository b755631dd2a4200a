package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hearth/server"
)

// TestComplementCertificate: with Complement's CA in place (an RSA key in
// PKCS #1, as Complement writes it), complement mode serves HTTPS on 8448
// with a certificate for SERVER_NAME that the CA vouches for.
func TestComplementCertificate(t *testing.T) {
	caDir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Complement CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(caDir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", "CERTIFICATE", der)
	write("ca.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	cfg := server.Config{DataDir: t.TempDir(), ServerName: "hs1"}
	if err := server.ComplementTLS(&cfg, caDir); err != nil {
		t.Fatal(err)
	}
	if cfg.FederationAddr != "0.0.0.0:8448" || !cfg.AllowPrivateAddresses || cfg.TrustCAFile != filepath.Join(caDir, "ca.crt") {
		t.Fatalf("config: %+v", cfg)
	}
	pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "hs1", Roots: roots}); err != nil {
		t.Fatalf("minted certificate does not verify for hs1: %v", err)
	}

	// Without the CA, complement mode serves no HTTPS.
	cfg = server.Config{DataDir: t.TempDir(), ServerName: "hs1"}
	if err := server.ComplementTLS(&cfg, t.TempDir()); err != nil || cfg.FederationAddr != "" {
		t.Fatalf("no CA: %v %+v", err, cfg)
	}
}

// TestWellKnownServerChecked: a delegation target that is no server name
// stops the server from starting, rather than being announced.
func TestWellKnownServerChecked(t *testing.T) {
	for _, target := range []string{"https://matrix.example.org", "matrix.example.org:0", "bad host"} {
		s, err := server.Open(server.Config{DataDir: t.TempDir(), ServerName: "localhost", WellKnownServer: target})
		if err == nil {
			s.Shutdown(t.Context())
			t.Errorf("--well-known-server %q accepted", target)
		}
	}
}
