package federation_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/server/pdu"
	"hearth/server/servertest"
)

// identityServer stands in for an identity server (Sydent), which cannot
// run here. It serves the Identity Service API's v2 hash_details, lookup,
// store-invite and pubkey validity endpoints over HTTPS with a
// certificate of the test CA, checks every request it receives against
// the spec (a malformed one fails the test), and, when an address is
// bound, calls the bound user's server's /3pid/onbind with the invites
// stored for it, their signed blocks signed with its long-term key, as a
// real identity server does.
type identityServer struct {
	t      *testing.T
	name   string             // "localhost:<port>", the id_server clients name
	key    ed25519.PrivateKey // long-term, "ed25519:0"
	token  string             // the id_access_token it accepts
	pepper string
	client *http.Client // trusting the test CA, for /3pid/onbind

	mu       sync.Mutex        // guards the fields below
	bindings map[string]string // "medium address" → Matrix ID
	invites  []storedInvite
	requests map[string]int // requests received, by path
	revoked  bool           // the long-term key is no longer valid
}

type storedInvite struct {
	medium, address, roomID, sender, token string
	ephemeral                              ed25519.PrivateKey
}

func startIdentityServer(t *testing.T, ca *servertest.CA) *identityServer {
	t.Helper()
	name, serve := listenTLS(t, ca)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	is := &identityServer{t: t, name: name, key: key, token: "is-token-" + name, pepper: "pepper-" + name,
		client: ca.HTTPClient(t), bindings: map[string]string{}, requests: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/_matrix/identity/v2/hash_details", is.hashDetails)
	mux.HandleFunc("/_matrix/identity/v2/lookup", is.lookup)
	mux.HandleFunc("/_matrix/identity/v2/store-invite", is.storeInvite)
	mux.HandleFunc("/_matrix/identity/v2/pubkey/isvalid", is.isValid)
	mux.HandleFunc("/_matrix/identity/v2/pubkey/ephemeral/isvalid", is.isValid)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("identity server: unexpected %s %s", r.Method, r.URL)
		is.fail(w, http.StatusNotFound, "M_UNRECOGNIZED", "not served")
	})
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.requests[r.URL.Path]++
		is.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	serve(counted)
	return is
}

// invite3PID is the body of a third-party /invite of address through is.
func (is *identityServer) invite3PID(address string) map[string]any {
	return map[string]any{"id_server": is.name, "id_access_token": is.token, "medium": "email", "address": address}
}

// requestsTo returns how many requests the identity server had for path
// (under /_matrix/identity/v2).
func (is *identityServer) requestsTo(path string) int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.requests["/_matrix/identity/v2"+path]
}

func (is *identityServer) total() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	n := 0
	for _, c := range is.requests {
		n += c
	}
	return n
}

// knowBinding records address as bound to mxid without telling anyone:
// an address bound before anyone invited it.
func (is *identityServer) knowBinding(address, mxid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.bindings["email "+address] = mxid
}

// revoke makes the long-term key invalid (or valid again).
func (is *identityServer) revoke(revoked bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.revoked = revoked
}

// bind binds address to mxid, as after the user proved they hold it, and
// calls /3pid/onbind on mxid's server with the invites stored for it, each
// signed block signed by signer (the long-term key; another for a
// forgery). It returns that server's answer.
func (is *identityServer) bind(address, mxid string, signer ed25519.PrivateKey, method string) *servertest.Response {
	is.t.Helper()
	is.mu.Lock()
	is.bindings["email "+address] = mxid
	var invites []map[string]any
	for _, inv := range is.invites {
		if inv.address != address {
			continue
		}
		obj, _ := json.Marshal(map[string]any{"mxid": mxid, "token": inv.token})
		signed, err := pdu.SignJSON(is.name, "ed25519:0", signer, obj)
		if err != nil {
			is.t.Fatal(err)
		}
		// Sydent also repeats the token at the invite's top level.
		invites = append(invites, map[string]any{"medium": inv.medium, "address": inv.address, "mxid": mxid,
			"room_id": inv.roomID, "sender": inv.sender, "token": inv.token, "signed": json.RawMessage(signed)})
	}
	is.mu.Unlock()
	// The association, with Sydent's extra fields and signature.
	assoc, _ := json.Marshal(map[string]any{"medium": "email", "address": address, "mxid": mxid, "invites": invites,
		"not_before": time.Now().UnixMilli(), "not_after": time.Now().Add(100 * 365 * 24 * time.Hour).UnixMilli(), "ts": time.Now().UnixMilli()})
	body, err := pdu.SignJSON(is.name, "ed25519:0", is.key, assoc)
	if err != nil {
		is.t.Fatal(err)
	}
	_, server, _ := strings.Cut(mxid, ":")
	req, _ := http.NewRequest(method, "https://"+server+"/_matrix/federation/v1/3pid/onbind", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := is.client.Do(req)
	if err != nil {
		is.t.Fatalf("identity server: onbind to %s: %v", server, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := &servertest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	_ = json.Unmarshal(raw, &r.JSON)
	return r
}

func (is *identityServer) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": msg})
}

func (is *identityServer) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// expiredToken is an id_access_token the identity server once issued:
// it answers 401 M_UNAUTHORIZED to it, as to any token it no longer takes.
const expiredToken = "expired-token"

// authorised checks the bearer token the v2 API requires of these
// endpoints.
func (is *identityServer) authorised(w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Get("Authorization")
	if got == "Bearer "+expiredToken {
		is.fail(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "Token expired")
		return false
	}
	if got != "Bearer "+is.token {
		is.t.Errorf("identity server: %s %s with Authorization %q, want the client's id_access_token as the bearer", r.Method, r.URL.Path, got)
		is.fail(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "bad token")
		return false
	}
	return true
}

// method checks the request's method.
func (is *identityServer) method(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method != want {
		is.t.Errorf("identity server: %s %s, want %s", r.Method, r.URL.Path, want)
		is.fail(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method")
		return false
	}
	return true
}

// decode reads a JSON object body into v, failing the test unless it is
// one (with strict, no other fields than v has).
func (is *identityServer) decode(w http.ResponseWriter, r *http.Request, v any, strict bool) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		is.t.Errorf("identity server: %s %s with Content-Type %q", r.Method, r.URL.Path, ct)
	}
	dec := json.NewDecoder(r.Body)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		is.t.Errorf("identity server: %s %s: body not of the spec's shape: %v", r.Method, r.URL.Path, err)
		is.fail(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return false
	}
	return true
}

// hashDetails is GET /_matrix/identity/v2/hash_details.
func (is *identityServer) hashDetails(w http.ResponseWriter, r *http.Request) {
	if !is.method(w, r, "GET") || !is.authorised(w, r) {
		return
	}
	is.reply(w, map[string]any{"lookup_pepper": is.pepper, "algorithms": []string{"none", "sha256"}})
}

// lookup is POST /_matrix/identity/v2/lookup.
func (is *identityServer) lookup(w http.ResponseWriter, r *http.Request) {
	if !is.method(w, r, "POST") || !is.authorised(w, r) {
		return
	}
	var req struct {
		Algorithm *string   `json:"algorithm"`
		Pepper    *string   `json:"pepper"`
		Addresses *[]string `json:"addresses"`
	}
	if !is.decode(w, r, &req, true) {
		return
	}
	if req.Algorithm == nil || req.Pepper == nil || req.Addresses == nil {
		is.t.Errorf("identity server: lookup without algorithm, pepper or addresses")
		is.fail(w, http.StatusBadRequest, "M_MISSING_PARAM", "missing")
		return
	}
	if *req.Pepper != is.pepper {
		is.t.Errorf("identity server: lookup with pepper %q, not the one hash_details gave", *req.Pepper)
		is.fail(w, http.StatusBadRequest, "M_INVALID_PEPPER", "pepper")
		return
	}
	if *req.Algorithm != "sha256" {
		is.t.Errorf("identity server: lookup with algorithm %q, though sha256 is offered (and preferred)", *req.Algorithm)
		is.fail(w, http.StatusBadRequest, "M_INVALID_PARAM", "algorithm")
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	mappings := map[string]string{}
	for _, a := range *req.Addresses {
		if raw, err := base64.RawURLEncoding.DecodeString(a); err != nil || len(raw) != sha256.Size {
			is.t.Errorf("identity server: lookup address %q is not URL-safe unpadded base64 of a SHA-256", a)
		}
		for id, mxid := range is.bindings {
			medium, address, _ := strings.Cut(id, " ")
			sum := sha256.Sum256([]byte(address + " " + medium + " " + is.pepper))
			if base64.RawURLEncoding.EncodeToString(sum[:]) == a {
				mappings[a] = mxid
			}
		}
	}
	is.reply(w, map[string]any{"mappings": mappings})
}

// storeInvite is POST /_matrix/identity/v2/store-invite.
func (is *identityServer) storeInvite(w http.ResponseWriter, r *http.Request) {
	if !is.method(w, r, "POST") || !is.authorised(w, r) {
		return
	}
	var req map[string]any // other parameters are allowed
	if !is.decode(w, r, &req, false) {
		return
	}
	str := func(field string, required bool, prefix string) string {
		v, ok := req[field]
		if !ok {
			if required {
				is.t.Errorf("identity server: store-invite without %s", field)
			}
			return ""
		}
		s, isStr := v.(string)
		if !isStr || !strings.HasPrefix(s, prefix) {
			is.t.Errorf("identity server: store-invite %s = %#v, want a string starting %q", field, v, prefix)
		}
		return s
	}
	medium, address := str("medium", true, ""), str("address", true, "")
	roomID, sender := str("room_id", true, "!"), str("sender", true, "@")
	str("room_alias", false, "#")
	str("room_avatar_url", false, "mxc://")
	str("sender_avatar_url", false, "mxc://")
	for _, f := range []string{"room_join_rules", "room_name", "sender_display_name", "room_type"} {
		str(f, false, "")
	}
	if medium != "email" {
		is.t.Errorf("identity server: store-invite medium %q, want email", medium)
		is.fail(w, http.StatusBadRequest, "M_UNRECOGNIZED", "medium")
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if mxid, ok := is.bindings["email "+address]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"errcode": "M_THREEPID_IN_USE", "error": "Binding already known", "mxid": mxid})
		return
	}
	_, eph, _ := ed25519.GenerateKey(rand.Reader)
	tok := make([]byte, 16)
	rand.Read(tok)
	inv := storedInvite{medium: medium, address: address, roomID: roomID, sender: sender,
		token: base64.RawURLEncoding.EncodeToString(tok), ephemeral: eph}
	is.invites = append(is.invites, inv)
	base := "https://" + is.name + "/_matrix/identity/v2"
	is.reply(w, map[string]any{
		"token": inv.token,
		"public_keys": []map[string]string{
			{"public_key": b64(is.key.Public().(ed25519.PublicKey)), "key_validity_url": base + "/pubkey/isvalid"},
			{"public_key": b64(eph.Public().(ed25519.PublicKey)), "key_validity_url": base + "/pubkey/ephemeral/isvalid"},
		},
		"display_name": address[:1] + "...@...",
	})
}

// isValid is GET /_matrix/identity/v2/pubkey/isvalid and
// /pubkey/ephemeral/isvalid.
func (is *identityServer) isValid(w http.ResponseWriter, r *http.Request) {
	if !is.method(w, r, "GET") {
		return
	}
	key := r.URL.Query().Get("public_key")
	if key == "" {
		is.t.Errorf("identity server: %s without public_key", r.URL.Path)
		is.fail(w, http.StatusBadRequest, "M_MISSING_PARAM", "public_key")
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	valid := false
	if strings.Contains(r.URL.Path, "/ephemeral/") {
		for _, inv := range is.invites {
			valid = valid || key == b64(inv.ephemeral.Public().(ed25519.PublicKey))
		}
	} else {
		valid = key == b64(is.key.Public().(ed25519.PublicKey)) && !is.revoked
	}
	is.reply(w, map[string]bool{"valid": valid})
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// otherKey is a key the identity server never published: a forger's.
func otherKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}
