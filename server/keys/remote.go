package keys

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"sync"
	"time"

	"hearth/store"
)

// The one seam between users of this server and users of others. Local
// users are answered from the store; requests for remote users are grouped
// by server and sent to each in parallel over federation. The device
// lists of remote users who share a room with one of ours are cached
// (devicecache.go) and answered from the cache while it is kept current.

// FederationCall sends a signed federation request to destination and
// decodes the JSON response into out: federation.Client.Call, wired in by
// the server, since this package sits below federation.
type FederationCall func(ctx context.Context, method, destination, uri string, in, out any) error

// defaultRemoteTimeout bounds how long a client's key query or claim
// waits for other servers when it names no timeout.
const defaultRemoteTimeout = 10 * time.Second

// requestTimeout is a client's timeout (ms) for remote servers, bounded.
func requestTimeout(ms int) time.Duration {
	if ms <= 0 {
		return defaultRemoteTimeout
	}
	return min(time.Duration(ms)*time.Millisecond, time.Minute)
}

// partition splits a request keyed by user ID into the local part and the
// remote part by server name. Malformed user IDs are dropped.
func partition[V any](byUser map[string]V, isLocal func(string) bool) (local map[string]V, remote map[string]map[string]V) {
	local, remote = map[string]V{}, map[string]map[string]V{}
	for userID, v := range byUser {
		server, ok := splitUserID(userID)
		switch {
		case !ok:
		case isLocal(userID):
			local[userID] = v
		default:
			if remote[server] == nil {
				remote[server] = map[string]V{}
			}
			remote[server][userID] = v
		}
	}
	return local, remote
}

func (s *Service) partition(byUser map[string]map[string]string) (map[string]map[string]string, map[string]map[string]map[string]string) {
	return partition(byUser, s.isLocal)
}

func (s *Service) isLocal(userID string) bool {
	_, ok := s.acc.LocalpartOf(userID)
	return ok
}

// remoteFailure is the failure reported for a server whose users' keys
// could not be fetched: the shape Synapse uses for an unreachable one.
func remoteFailure(err error) map[string]any {
	if err == nil {
		err = errors.New("federation is not enabled")
	}
	return map[string]any{"status": 503, "message": "Keys of this server's users are not available: " + err.Error()}
}

// FederatedQueryResp is the answer of POST /_matrix/federation/v1/user/keys/query.
type FederatedQueryResp struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys,omitempty"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys,omitempty"`
}

// queryRemote adds the keys of users of other servers to resp, asking
// each server in parallel for at most timeout; a server that fails is
// listed in resp.Failures.
func (s *Service) queryRemote(ctx context.Context, resp *queryResp, remote map[string]map[string][]string, timeout time.Duration) {
	if len(remote) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex // guards resp
	var wg sync.WaitGroup
	for server, users := range remote {
		wg.Add(1)
		go func() { // one per server, so a slow one delays none of the others
			defer wg.Done()
			part, err := s.queryServer(ctx, server, users)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Failures[server] = remoteFailure(err)
			}
			if part == nil {
				return
			}
			for u, devs := range part.DeviceKeys {
				resp.DeviceKeys[u] = devs
			}
			for u, k := range part.MasterKeys {
				resp.MasterKeys[u] = k
			}
			for u, k := range part.SelfSigningKeys {
				resp.SelfSigningKeys[u] = k
			}
		}()
	}
	wg.Wait()
}

// queryServer answers a key query for users of one server: from the
// device-list cache where it is trusted, after a resync for users who
// share a room with ours and ask for all devices (so their updates are
// followed from then on), and otherwise by asking the server. Only what
// the server says of its own users is kept.
func (s *Service) queryServer(ctx context.Context, server string, users map[string][]string) (*FederatedQueryResp, error) {
	out := &FederatedQueryResp{DeviceKeys: map[string]map[string]json.RawMessage{},
		MasterKeys: map[string]json.RawMessage{}, SelfSigningKeys: map[string]json.RawMessage{}}
	ask := map[string][]string{}
	for userID, want := range users {
		tracked := s.sharesRoomWithLocal(userID)
		if tracked && len(want) == 0 && !s.cached(userID) {
			if err := s.resync(ctx, userID); err != nil {
				s.log("device list resync failed", "user", userID, "err", err)
			}
		}
		if tracked && s.addCached(out, userID, want) {
			continue
		}
		ask[userID] = want
	}
	if len(ask) == 0 {
		return out, nil
	}
	if s.Federation == nil {
		return out, errors.New("federation is not enabled")
	}
	var got FederatedQueryResp
	if err := s.Federation(ctx, "POST", server, "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": ask}, &got); err != nil {
		return out, err
	}
	for userID, want := range ask {
		devs := map[string]json.RawMessage{}
		for id, js := range got.DeviceKeys[userID] {
			if (len(want) == 0 || slices.Contains(want, id)) && keysOf(js, userID, id) {
				devs[id] = js
			}
		}
		out.DeviceKeys[userID] = devs
		if k := got.MasterKeys[userID]; keysOf(k, userID, "") {
			out.MasterKeys[userID] = k
		}
		if k := got.SelfSigningKeys[userID]; keysOf(k, userID, "") {
			out.SelfSigningKeys[userID] = k
		}
	}
	return out, nil
}

// keysOf reports whether js is a key object of userID (and of deviceID,
// when not ""): a server may not hand out keys in another's name.
func keysOf(js json.RawMessage, userID, deviceID string) bool {
	if len(js) == 0 || js[0] != '{' {
		return false
	}
	var o signedObject
	if json.Unmarshal(js, &o) != nil {
		return false
	}
	return o.UserID == userID && (deviceID == "" || o.DeviceID == deviceID)
}

// FederatedClaimResp is the answer of POST /_matrix/federation/v1/user/keys/claim.
type FederatedClaimResp struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
}

// claimRemote claims one-time keys of users of other servers into resp,
// asking each server in parallel for at most timeout.
func (s *Service) claimRemote(ctx context.Context, resp *claimResp, remote map[string]map[string]map[string]string, timeout time.Duration) {
	if len(remote) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex // guards resp
	var wg sync.WaitGroup
	for server, users := range remote {
		wg.Add(1)
		go func() { // one per server, so a slow one delays none of the others
			defer wg.Done()
			var got FederatedClaimResp
			err := errors.New("federation is not enabled")
			if s.Federation != nil {
				err = s.Federation(ctx, "POST", server, "/_matrix/federation/v1/user/keys/claim",
					map[string]any{"one_time_keys": users}, &got)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Failures[server] = remoteFailure(err)
				return
			}
			for userID, devices := range users {
				for deviceID := range devices {
					keys := got.OneTimeKeys[userID][deviceID]
					if len(keys) == 0 {
						continue
					}
					if resp.OneTimeKeys[userID] == nil {
						resp.OneTimeKeys[userID] = map[string]map[string]json.RawMessage{}
					}
					resp.OneTimeKeys[userID][deviceID] = keys
				}
			}
		}()
	}
	wg.Wait()
}

// userDevicesURI is the path of GET /user/devices/{userId}.
func userDevicesURI(userID string) string {
	return "/_matrix/federation/v1/user/devices/" + url.PathEscape(userID)
}

// sharesRoomWithLocal reports whether userID is joined to a room a local
// user is joined to: only then are their device-list updates followed.
func (s *Service) sharesRoomWithLocal(userID string) bool {
	shared := false
	_ = s.store.View(func(tx *store.Tx) (err error) {
		shared, _, err = s.sharedSince(tx, userID)
		return err
	})
	return shared
}

// sharedSince reports whether userID is joined to a room a local user is
// joined to and, if so, the stream position since which such a room has
// been shared without a break, as far as current memberships tell: in
// each shared room, from the later of the user's join and the earliest
// join of a local user still there. A member event that is not a break
// (a new display name) only makes the answer later than it could be.
func (s *Service) sharedSince(tx *store.Tx, userID string) (bool, uint64, error) {
	ms, err := tx.Memberships(userID)
	if err != nil {
		return false, 0, err
	}
	shared, since := false, uint64(0)
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		members, err := roomMembers(tx, m.RoomNID)
		if err != nil {
			return false, 0, err
		}
		localSince, withLocal := uint64(0), false
		for u, um := range members {
			if um.Membership == "join" && s.isLocal(u) && (!withLocal || um.Pos < localSince) {
				localSince, withLocal = um.Pos, true
			}
		}
		if !withLocal {
			continue
		}
		roomSince := max(m.Pos, localSince)
		if !shared || roomSince < since {
			since = roomSince
		}
		shared = true
	}
	return shared, since, nil
}

// validCache returns a remote user's cached device list if it is current:
// the user shares a room with ours, and has without a break since the
// list was fetched, so no update can have been missed.
func (s *Service) validCache(tx *store.Tx, userID string) (*store.RemoteDeviceList, bool) {
	l, err := tx.RemoteDeviceList(userID)
	if err != nil {
		return nil, false
	}
	shared, since, err := s.sharedSince(tx, userID)
	if err != nil || !shared || since > l.Pos {
		return nil, false
	}
	return l, true
}
