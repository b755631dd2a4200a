// Package keys serves the end-to-end encryption key endpoints of the
// Client-Server API: device identity keys, one-time and fallback keys,
// cross-signing keys and signatures, and the device-list changes /sync
// and /keys/changes report.
//
// Users of this server are answered from the store; users of other
// servers through one seam (remote.go) that asks their servers, with a
// cache of the device lists of those who share a room with ours
// (devicecache.go). What other servers are told of our users' devices is
// in federated.go.
package keys

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// Service holds the key endpoints of one server.
type Service struct {
	store *store.Store
	acc   *accounts.Service
	// notify is told, after commit, that userID's devices or keys changed
	// at stream position pos: it wakes the syncs of everyone concerned.
	notify func(pos uint64, userID string)

	// Federation reaches other servers' key APIs; nil with federation
	// off, when their users' keys are reported unavailable.
	Federation FederationCall
	// DeviceNamesOverFederation shows other servers our users' device
	// display names (in /user/devices, /user/keys/query and device-list
	// updates). Off, as Synapse defaults it: a device's name ("Alice's
	// work laptop") is for its owner and the people they talk to, not for
	// every server in their rooms.
	DeviceNamesOverFederation bool
	// Log receives what goes wrong with other servers; nil for the default.
	Log *slog.Logger

	userMu    sync.Mutex           // guards userLocks
	userLocks map[string]*userLock // by remote user: one update or resync at a time
}

// New returns the key service. notify is called after a device-list change
// is durable; it may be nil.
func New(st *store.Store, acc *accounts.Service, notify func(pos uint64, userID string)) *Service {
	if notify == nil {
		notify = func(uint64, string) {}
	}
	return &Service{store: st, acc: acc, notify: notify, userLocks: map[string]*userLock{}}
}

func (s *Service) log(msg string, args ...any) {
	l := s.Log
	if l == nil {
		l = slog.Default()
	}
	l.Info("keys: "+msg, args...)
}

// Routes is the route table of the spec's "End-to-end encryption" key
// endpoints (key backup lives elsewhere).
func (s *Service) Routes() []httpx.Route {
	return []httpx.Route{
		{Method: "POST", Path: "/v3/keys/upload", Auth: httpx.UserAuth, Handler: httpx.JSON(s.upload)},
		{Method: "POST", Path: "/v3/keys/query", Auth: httpx.UserAuth, Handler: httpx.JSON(s.query)},
		{Method: "POST", Path: "/v3/keys/claim", Auth: httpx.UserAuth, Handler: httpx.JSON(s.claim)},
		{Method: "GET", Path: "/v3/keys/changes", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.changes)},
		{Method: "POST", Path: "/v3/keys/device_signing/upload", Auth: httpx.UserAuth, Handler: httpx.JSON(s.uploadCrossSigning)},
		{Method: "POST", Path: "/v3/keys/signatures/upload", Auth: httpx.UserAuth, Handler: s.uploadSignatures},
	}
}

// DeviceChanged wakes the syncs concerned by a device-list change that
// happened outside this package (a device deleted or renamed through
// the account endpoints), once it is durable.
func (s *Service) DeviceChanged(userID string) {
	var pos uint64
	_ = s.store.View(func(tx *store.Tx) error { pos = tx.LatestPos(); return nil })
	s.notify(pos, userID)
}

// invalidSignature is the spec's 400 M_INVALID_SIGNATURE.
func invalidSignature(format string, args ...any) *mxerr.Error {
	return &mxerr.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE", Message: fmt.Sprintf(format, args...)}
}

// signedObject is the shape shared by device keys and cross-signing keys.
type signedObject struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id,omitempty"`
	Usage      []string                     `json:"usage,omitempty"`
	Algorithms []string                     `json:"algorithms,omitempty"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// parseSigned decodes a key object a client sent; what is not a JSON
// object with the fields' types is M_BAD_JSON naming what.
func parseSigned(what string, js json.RawMessage) (*signedObject, error) {
	var o signedObject
	if len(js) == 0 || js[0] != '{' {
		return nil, mxerr.BadJSON("%s must be a JSON object", what)
	}
	if err := json.Unmarshal(js, &o); err != nil {
		return nil, mxerr.BadJSON("%s is malformed: %s", what, jsonProblem(err))
	}
	if len(o.Keys) == 0 {
		return nil, mxerr.BadJSON("%s has no keys", what)
	}
	return &o, nil
}

func jsonProblem(err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
		return "field " + te.Field + " has the wrong type"
	}
	return "not the expected shape"
}

// withSignatures returns js with extra signatures merged into its
// "signatures" and, when unsigned is not nil, its "unsigned" replaced.
func withSignatures(js json.RawMessage, extra map[string]map[string]string, unsigned map[string]any) json.RawMessage {
	if len(extra) == 0 && unsigned == nil {
		return js
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(js, &obj) != nil {
		return js
	}
	if len(extra) > 0 {
		sigs := map[string]map[string]string{}
		_ = json.Unmarshal(obj["signatures"], &sigs)
		for signer, byKey := range extra {
			if sigs[signer] == nil {
				sigs[signer] = map[string]string{}
			}
			for k, v := range byKey {
				sigs[signer][k] = v
			}
		}
		obj["signatures"], _ = json.Marshal(sigs)
	}
	if unsigned != nil {
		obj["unsigned"], _ = json.Marshal(unsigned)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return js
	}
	return out
}

// splitUserID returns the server name of a user ID, or false for a
// malformed one.
func splitUserID(userID string) (string, bool) {
	rest, ok := strings.CutPrefix(userID, "@")
	if !ok {
		return "", false
	}
	lp, server, ok := strings.Cut(rest, ":")
	return server, ok && lp != "" && server != ""
}
