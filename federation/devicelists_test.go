package federation_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server"
	"hearth/server/pdu"
	"hearth/server/servertest"
)

// listener is a bare homeserver of the test's own: it serves its signing
// key over HTTPS, joins rooms through make_join and send_join like any
// server, and keeps the EDUs other servers send it, so a test can see
// exactly what a peer is told. Everything else it answers with 404.
type listener struct {
	name   string
	signer pdu.Signer
	client *federation.Client
	mux    *http.ServeMux // a test may serve more on it

	mu   sync.Mutex // guards edus
	edus []receivedEDU
}

type receivedEDU struct {
	Origin  string
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// listenTLS opens a loopback listener named "localhost:<port>" with a
// certificate from ca, which the test's Hearth servers trust, and returns
// its name and what serves a handler on it until the test ends.
func listenTLS(t *testing.T, ca *servertest.CA) (name string, serve func(http.Handler)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	certFile, keyFile, err := server.MintCertificate(ca.CertFile, ca.KeyFile, "localhost", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return "localhost:" + port, func(h http.Handler) {
		srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		go srv.ServeTLS(ln, "", "") // until the cleanup closes it
		t.Cleanup(func() { srv.Close() })
	}
}

// startListener starts a listener named "localhost:<port>" with a
// certificate from ca, which the test's Hearth servers trust.
func startListener(t *testing.T, ca *servertest.CA) *listener {
	t.Helper()
	name, serve := listenTLS(t, ca)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	l := &listener{name: name, signer: pdu.Signer{ServerName: name, KeyID: "ed25519:l", Key: key}}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	l.client = federation.NewClient(federation.ClientConfig{ServerName: l.name, KeyID: l.signer.KeyID, Key: key,
		RootCAs: roots, AllowPrivate: true})

	mux := http.NewServeMux()
	l.mux = mux
	mux.HandleFunc("GET /_matrix/key/v2/server", l.serveKey)
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnID}", l.receive)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errcode":"M_UNRECOGNIZED","error":"not served by the test listener"}`)
	})
	serve(mux)
	return l
}

func (l *listener) serveKey(w http.ResponseWriter, _ *http.Request) {
	pub := l.signer.Key.Public().(ed25519.PublicKey)
	raw, _ := json.Marshal(map[string]any{
		"server_name": l.name, "valid_until_ts": time.Now().Add(time.Hour).UnixMilli(), "old_verify_keys": map[string]any{},
		"verify_keys": map[string]any{l.signer.KeyID: map[string]string{"key": base64.RawStdEncoding.EncodeToString(pub)}},
	})
	signed, err := pdu.SignJSON(l.name, l.signer.KeyID, l.signer.Key, raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(signed)
}

// receive takes a transaction: its PDUs are acknowledged unread, its
// EDUs kept with the origin the X-Matrix header names.
func (l *listener) receive(w http.ResponseWriter, r *http.Request) {
	var txn struct {
		EDUs []receivedEDU `json:"edus"`
	}
	if err := json.NewDecoder(r.Body).Decode(&txn); err != nil {
		http.Error(w, `{"errcode":"M_BAD_JSON"}`, http.StatusBadRequest)
		return
	}
	_, rest, _ := strings.Cut(r.Header.Get("Authorization"), `origin="`)
	origin, _, _ := strings.Cut(rest, `"`)
	l.mu.Lock()
	for _, e := range txn.EDUs {
		e.Origin = origin
		l.edus = append(l.edus, e)
	}
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"pdus":{}}`)
}

// join joins userID (of the listener) to a room through via.
func (l *listener) join(t *testing.T, via *servertest.Server, roomID, userID string) {
	t.Helper()
	if _, _, err := l.sendJoin(t, via, roomID, userID, ""); err != nil {
		t.Fatalf("send_join: %v", err)
	}
}

// deviceListUpdates returns the m.device_list_update EDUs received about
// userID's device deviceID.
func (l *listener) deviceListUpdates(userID, deviceID string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, e := range l.edus {
		var c map[string]any
		if e.Type != "m.device_list_update" || json.Unmarshal(e.Content, &c) != nil {
			continue
		}
		if c["user_id"] == userID && c["device_id"] == deviceID && e.Origin == userServerOf(userID) {
			out = append(out, c)
		}
	}
	return out
}

func userServerOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}

// A user who joins a room comes to share it with servers that were not
// following their device list: each such server is sent the user's
// devices (the spec's m.device_list_update "when that user joins a room
// which contains servers which are not already receiving updates"), with
// their keys and names, whether the room lives on the user's server or
// was joined through another.
func TestDeviceListOnJoinReachesNewServers(t *testing.T) {
	ca := servertest.NewCA(t)
	names := servertest.Options{DeviceNamesOverFederation: true}
	a, b := ca.Start(t, names), ca.Start(t, names)
	c := startListener(t, ca)
	carol := "@carol:" + c.name

	t.Run("room on the joiner's server", func(t *testing.T) {
		host := a.Register(t, "host", "password-host")
		alice := a.Register(t, "alice", "password-alice")
		alice.Must(200, "PUT", "/_matrix/client/v3/devices/"+url.PathEscape(alice.DeviceID), map[string]any{"display_name": "Alice's laptop"})
		roomID := createRoom(t, host, map[string]any{"preset": "public_chat"})
		c.join(t, a, roomID, carol)
		alice.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{})
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			got := c.deviceListUpdates(alice.UserID, alice.DeviceID)
			for _, u := range got {
				if u["device_display_name"] == "Alice's laptop" && u["stream_id"] != nil {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%s was sent no device-list update for alice's device: %v", c.name, got)
		})
	})

	t.Run("room joined through another server, devices known elsewhere", func(t *testing.T) {
		bob := b.Register(t, "bob", "password-bob")
		dave := a.Register(t, "dave", "password-dave")
		// Dave shares a room with B first, and B is told of his keys: C,
		// which was not, must be told when dave comes to share a room
		// with it, though nothing changed since.
		first := createRoom(t, bob, map[string]any{"preset": "public_chat"})
		dave.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(first)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})
		pub := uploadDeviceKeys(t, dave)
		roomID := createRoom(t, bob, map[string]any{"preset": "public_chat"})
		c.join(t, b, roomID, carol)
		dave.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			got := c.deviceListUpdates(dave.UserID, dave.DeviceID)
			for _, u := range got {
				if get(u, "keys", "keys", "ed25519:"+dave.DeviceID) == pub {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%s was sent no device-list update with dave's keys: %v", c.name, got)
		})
	})
}

// uploadDeviceKeys uploads identity keys, self-signed, for c's device and
// returns its ed25519 key.
func uploadDeviceKeys(t *testing.T, c *servertest.Client) string {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pubB64 := base64.RawStdEncoding.EncodeToString(pub)
	keyID := "ed25519:" + c.DeviceID
	raw, _ := json.Marshal(map[string]any{"user_id": c.UserID, "device_id": c.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{keyID: pubB64, "curve25519:" + c.DeviceID: pubB64}})
	signed, err := pdu.SignJSON(c.UserID, keyID, priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	c.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": json.RawMessage(signed)})
	return pubB64
}
