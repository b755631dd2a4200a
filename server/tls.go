package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"hearth/federation"
	"hearth/server/httpx"
	"hearth/store"
)

// openFederation loads the certificate of the HTTPS listener and mounts
// the federation and key APIs, unless federation is off.
func (s *Server) openFederation(mux *httpx.Mux) error {
	if s.cfg.NoFederation {
		return nil
	}
	if s.cfg.FederationAddr != "" && (s.cfg.TLSCertFile == "" || s.cfg.TLSKeyFile == "") {
		return errors.New("the federation listener needs a certificate: set --tls-cert and --tls-key")
	}
	if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		s.tlsConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// fasthttp speaks no HTTP/2: a client offered h2 would fail.
			NextProtos: []string{"http/1.1"},
		}
	}
	pool, err := federation.CertPool(s.cfg.TrustCAFile)
	if err != nil {
		return err
	}
	if s.cfg.WellKnownServer != "" {
		if err := federation.CheckServerName(s.cfg.WellKnownServer); err != nil {
			return fmt.Errorf("--well-known-server: %w", err)
		}
	}
	s.federation = federation.New(federation.Config{
		ServerName: s.cfg.ServerName, KeyID: s.keyID, Key: s.signingKey, Version: s.cfg.Version,
		RootCAs: pool, AllowPrivate: s.cfg.AllowPrivateAddresses, Log: s.log, Rooms: s.rooms, DialContext: s.cfg.FederationDial,
		Accounts: s.accounts, WellKnownServer: s.cfg.WellKnownServer,
		Keys: s.keys, Ephemeral: s.ephemeral(), Identity: s.identity, NoRateLimit: s.cfg.NoRateLimit,
	}, s.store)
	s.sender = federation.NewSender(s.federation.Client(), s.store, federation.SenderConfig{Log: s.log})
	s.rooms.SetFederation(s.federation, s.federation, s.federation.Keys().PublicKey)
	s.rooms.QueueLocalEvent = func(tx *store.Tx, servers []string, ev []byte) (func(), error) {
		return s.sender.QueueTx(tx, servers, [][]byte{ev}, nil)
	}
	s.keys.Federation, s.keys.Log = s.federation.Client().Call, s.log
	s.sync.SendEDU = s.sendEDU
	mux.Handle("/_matrix/federation", s.federation.Routes())
	mux.Handle("/_matrix/key", s.federation.KeyRoutes())
	mux.Handle("", s.federation.WellKnownRoutes())
	return nil
}

// startTLS opens the HTTPS listener, if configured: the same routes as the
// plain one, as Synapse's default listener serves them.
func (s *Server) startTLS() error {
	if s.tlsConfig == nil || s.cfg.NoFederation {
		return nil
	}
	if s.cfg.FederationAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.FederationAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.FederationAddr, err)
	}
	tln := tls.NewListener(ln, s.tlsConfig)
	s.mu.Lock()
	s.listeners = append(s.listeners, tln)
	s.tlsListener = tln
	s.mu.Unlock()
	s.log.Info("federation listening", "addr", "https://"+ln.Addr().String(), "server_name", s.cfg.ServerName)
	go func() { s.serveErr <- s.httpSrv.Serve(tln) }() // ends when Shutdown closes tln
	return nil
}

// FederationAddr returns the address of the HTTPS listener, or "".
func (s *Server) FederationAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsListener == nil {
		return ""
	}
	return s.tlsListener.Addr().String()
}

// Federation returns the federation service, nil when federation is off.
func (s *Server) Federation() *federation.Service { return s.federation }

// MintCertificate writes a certificate for serverName's host, signed by
// the CA in caCertFile and caKeyFile (PEM), with its key, into dir, and
// returns the two files' paths. Complement mode uses it: the test suite
// gives every homeserver image its CA and expects certificates from it.
func MintCertificate(caCertFile, caKeyFile, serverName, dir string) (certFile, keyFile string, err error) {
	caPEM, err := os.ReadFile(caCertFile)
	if err != nil {
		return "", "", err
	}
	caKeyPEM, err := os.ReadFile(caKeyFile)
	if err != nil {
		return "", "", err
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return "", "", fmt.Errorf("%s: no PEM certificate", caCertFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", caCertFile, err)
	}
	caKey, err := parsePrivateKey(caKeyPEM)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", caKeyFile, err)
	}
	host := serverName
	if h, _, err := net.SplitHostPort(serverName); err == nil {
		host = h
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// parsePrivateKey reads a PEM private key in PKCS #8, PKCS #1 (RSA) or
// SEC 1 (EC) form.
func parsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("unsupported private key type")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key format")
}

// ComplementTLS sets up federation as Complement expects it: a
// certificate for the server name signed by Complement's CA (ca.crt and
// ca.key in caDir), HTTPS on 0.0.0.0:8448, that CA trusted and private
// addresses allowed (its homeservers talk on a Docker network). Without
// the CA files it changes nothing.
func ComplementTLS(cfg *Config, caDir string) error {
	caCert, caKey := filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key")
	if _, err := os.Stat(caCert); err != nil {
		return nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	certFile, keyFile, err := MintCertificate(caCert, caKey, cfg.ServerName, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("complement certificate: %w", err)
	}
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TrustCAFile = certFile, keyFile, caCert
	cfg.FederationAddr, cfg.AllowPrivateAddresses = "0.0.0.0:8448", true
	return nil
}
