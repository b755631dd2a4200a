package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
)

// keyValidity is how long our published key response stays valid.
const keyValidity = 7 * 24 * time.Hour

// refetchInterval is the least time between two fetches of one server's
// keys: a request naming a key we lack must not make us fetch on every
// call.
const refetchInterval = 30 * time.Second

// maxQueryServers bounds the servers one notary query may ask about.
const maxQueryServers = 50

// serverKeys is a key response (GET /_matrix/key/v2/server).
type serverKeys struct {
	ServerName    string                  `json:"server_name"`
	ValidUntilTS  int64                   `json:"valid_until_ts"`
	VerifyKeys    map[string]verifyKey    `json:"verify_keys"`
	OldVerifyKeys map[string]oldVerifyKey `json:"old_verify_keys"`
}

type verifyKey struct {
	Key string `json:"key"`
}

type oldVerifyKey struct {
	Key       string `json:"key"`
	ExpiredTS int64  `json:"expired_ts"`
}

// KeyRing holds our own signing key and the verified keys of other
// servers, fetched from each server directly and cached in memory until
// their valid_until_ts.
type KeyRing struct {
	serverName string
	keyID      string
	key        ed25519.PrivateKey
	client     *Client

	mu      sync.Mutex // guards servers
	servers map[string]*fetchedKeys
}

// fetchedKeys is the last key response of one server.
type fetchedKeys struct {
	keys      map[string]keyEntry // key ID → key and until when it may be used
	raw       []byte              // the response as the server signed it, for notary answers
	validTS   int64               // the response's valid_until_ts
	fetchedAt time.Time           // of the last attempt, successful or not
	inflight  chan struct{}       // closed when the fetch under way ends; nil when none is
}

type keyEntry struct {
	key     string // unpadded base64
	untilTS int64  // valid_until_ts, or expired_ts for an old key
}

// NewKeyRing returns a key ring for our server, fetching others' keys
// through client.
func NewKeyRing(serverName, keyID string, key ed25519.PrivateKey, client *Client) *KeyRing {
	return &KeyRing{serverName: serverName, keyID: keyID, key: key, client: client, servers: map[string]*fetchedKeys{}}
}

// OwnKeys returns our signed key response, valid for a week from now.
func (k *KeyRing) OwnKeys() ([]byte, error) {
	pub := k.key.Public().(ed25519.PublicKey)
	raw, err := json.Marshal(serverKeys{
		ServerName:    k.serverName,
		ValidUntilTS:  time.Now().Add(keyValidity).UnixMilli(),
		VerifyKeys:    map[string]verifyKey{k.keyID: {Key: base64.RawStdEncoding.EncodeToString(pub)}},
		OldVerifyKeys: map[string]oldVerifyKey{},
	})
	if err != nil {
		return nil, err
	}
	return pdu.SignJSON(k.serverName, k.keyID, k.key, raw)
}

// ErrNoKey means a server's key could not be found or fetched, or is not
// valid at the time asked.
var ErrNoKey = errors.New("federation: no valid key")

// PublicKey returns server's key keyID (unpadded base64) if it is valid at
// atTS (milliseconds), fetching the server's keys when they are not cached
// or the cached ones do not answer.
func (k *KeyRing) PublicKey(ctx context.Context, server, keyID string, atTS int64) (string, error) {
	if server == k.serverName {
		if keyID != k.keyID {
			return "", ErrNoKey
		}
		return base64.RawStdEncoding.EncodeToString(k.key.Public().(ed25519.PublicKey)), nil
	}
	if key, ok := k.cached(server, keyID, atTS); ok {
		return key, nil
	}
	if err := k.fetch(ctx, server); err != nil {
		return "", err
	}
	if key, ok := k.cached(server, keyID, atTS); ok {
		return key, nil
	}
	return "", ErrNoKey
}

func (k *KeyRing) cached(server, keyID string, atTS int64) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f := k.servers[server]
	if f == nil {
		return "", false
	}
	v, ok := f.keys[keyID]
	if !ok || v.untilTS < atTS {
		return "", false
	}
	return v.key, true
}

// fetch gets server's keys from the server itself and caches them once
// their self-signatures verify; it does nothing when the last attempt was
// within refetchInterval.
func (k *KeyRing) fetch(ctx context.Context, server string) error {
	k.mu.Lock()
	f := k.servers[server]
	if f != nil && f.inflight != nil {
		// Another request is fetching these keys: wait for its answer.
		wait := f.inflight
		k.mu.Unlock()
		select {
		case <-wait:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f != nil && time.Since(f.fetchedAt) < refetchInterval {
		k.mu.Unlock()
		return nil
	}
	if f == nil {
		f = &fetchedKeys{}
		k.servers[server] = f
	}
	f.fetchedAt = time.Now()
	done := make(chan struct{})
	f.inflight = done
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		f.inflight = nil
		k.mu.Unlock()
		close(done)
	}()

	req, err := k.client.NewRequest(ctx, "GET", server, "/_matrix/key/v2/server", nil)
	if err != nil {
		return err
	}
	req.Header.Del("Authorization") // the key API takes no X-Matrix auth
	var raw []byte
	if err := k.client.Do(req, &raw); err != nil {
		return fmt.Errorf("fetch keys of %s: %w", server, err)
	}
	keys, validTS, err := verifyKeyResponse(raw, server)
	if err != nil {
		return fmt.Errorf("fetch keys of %s: %w", server, err)
	}
	k.mu.Lock()
	f.keys, f.raw, f.validTS, f.fetchedAt = keys, raw, validTS, time.Now()
	k.mu.Unlock()
	return nil
}

// verifyKeyResponse checks that raw is server's key response and that
// every current key in it signed it, and returns its keys.
func verifyKeyResponse(raw []byte, server string) (map[string]keyEntry, int64, error) {
	var sk serverKeys
	if err := json.Unmarshal(raw, &sk); err != nil {
		return nil, 0, fmt.Errorf("bad key response: %w", err)
	}
	if sk.ServerName != server {
		return nil, 0, fmt.Errorf("key response is for %q", sk.ServerName)
	}
	if len(sk.VerifyKeys) == 0 {
		return nil, 0, errors.New("key response has no verify_keys")
	}
	keys := make(map[string]keyEntry, len(sk.VerifyKeys)+len(sk.OldVerifyKeys))
	for id, vk := range sk.VerifyKeys {
		if err := pdu.VerifyJSONSignature(raw, server, id, vk.Key); err != nil {
			return nil, 0, fmt.Errorf("key response not signed by its key %s", id)
		}
		keys[id] = keyEntry{key: vk.Key, untilTS: sk.ValidUntilTS}
	}
	for id, ok := range sk.OldVerifyKeys {
		if _, cur := keys[id]; !cur {
			keys[id] = keyEntry{key: ok.Key, untilTS: ok.ExpiredTS}
		}
	}
	return keys, sk.ValidUntilTS, nil
}

// notaryResponse returns server's key response valid at least until
// minValidTS, signed by us as a notary, or nil when we cannot get one.
func (k *KeyRing) notaryResponse(ctx context.Context, server string, minValidTS int64) []byte {
	if server == k.serverName {
		raw, err := k.OwnKeys()
		if err != nil {
			return nil
		}
		return raw
	}
	raw := k.cachedResponse(server, minValidTS)
	if raw == nil {
		if err := k.fetch(ctx, server); err != nil {
			return nil
		}
		if raw = k.cachedResponse(server, minValidTS); raw == nil {
			return nil
		}
	}
	signed, err := pdu.SignJSON(k.serverName, k.keyID, k.key, raw)
	if err != nil {
		return nil
	}
	return signed
}

func (k *KeyRing) cachedResponse(server string, minValidTS int64) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f := k.servers[server]; f != nil && f.raw != nil && f.validTS >= minValidTS {
		return f.raw
	}
	return nil
}

// serverKeysResp is the body of a key query.
type serverKeysResp struct {
	ServerKeys []json.RawMessage `json:"server_keys"`
}

func (s *Service) ownKeys(*httpx.Request) (json.RawMessage, error) {
	return s.keys.OwnKeys()
}

type keyQueryReq struct {
	ServerKeys map[string]map[string]struct {
		MinimumValidUntilTS int64 `json:"minimum_valid_until_ts"`
	} `json:"server_keys"`
}

// queryKeys is POST /_matrix/key/v2/query: keys of the servers asked
// about that we have or can fetch; the others are left out.
func (s *Service) queryKeys(r *httpx.Request, in *keyQueryReq) (*serverKeysResp, error) {
	if len(in.ServerKeys) > maxQueryServers {
		return nil, mxerr.InvalidParam("At most %d servers per query", maxQueryServers)
	}
	resp := &serverKeysResp{ServerKeys: []json.RawMessage{}}
	for server, ids := range in.ServerKeys {
		var minTS int64
		for _, c := range ids {
			minTS = max(minTS, c.MinimumValidUntilTS)
		}
		if raw := s.keys.notaryResponse(r.Context(), server, minTS); raw != nil {
			resp.ServerKeys = append(resp.ServerKeys, raw)
		}
	}
	return resp, nil
}

// queryServerKeys is GET /_matrix/key/v2/query/{serverName}.
func (s *Service) queryServerKeys(r *httpx.Request) (*serverKeysResp, error) {
	var minTS int64
	if v := r.Query("minimum_valid_until_ts"); v != "" {
		if _, err := fmt.Sscan(v, &minTS); err != nil {
			return nil, mxerr.InvalidParam("minimum_valid_until_ts must be an integer")
		}
	}
	server := r.Param("serverName")
	resp := &serverKeysResp{ServerKeys: []json.RawMessage{}}
	if raw := s.keys.notaryResponse(r.Context(), server, minTS); raw != nil {
		resp.ServerKeys = append(resp.ServerKeys, raw)
	}
	return resp, nil
}
