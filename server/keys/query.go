package keys

import (
	"encoding/json"
	"errors"
	"slices"

	"hearth/server/httpx"
	"hearth/store"
)

type queryReq struct {
	Timeout    int                 `json:"timeout"`
	DeviceKeys map[string][]string `json:"device_keys"`
}

type queryResp struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

// query is POST /keys/query: the identity keys of the devices asked for
// (all of a user's devices for an empty list) and the users'
// cross-signing keys, with the signatures uploaded since merged in. A
// user-signing key is only ever shown to its owner, and signatures others
// made over a master key only to who made them. Users of other servers
// are asked of their servers (remote.go).
func (s *Service) query(r *httpx.Request, in *queryReq) (*queryResp, error) {
	resp := newQueryResp()
	local, remote := partition(in.DeviceKeys, s.isLocal)
	err := s.store.View(func(tx *store.Tx) error {
		for userID, want := range local {
			if err := s.addLocalKeys(tx, resp, userID, want, r.Principal.UserID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.queryRemote(r.Context(), resp, remote, requestTimeout(in.Timeout))
	return resp, nil
}

func newQueryResp() *queryResp {
	return &queryResp{
		DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{},
		Failures: map[string]any{},
	}
}

// addLocalKeys adds a local user's device keys (those of want, all for
// none), each with its display name, and cross-signing keys to a query
// response for requester: a user ID, or "" for another server, which sees
// no user-signing key, and the display names only where the server is
// configured to show them (DeviceNamesOverFederation), as in device-list
// updates (federated.go).
func (s *Service) addLocalKeys(tx *store.Tx, resp *queryResp, userID string, want []string, requester string) error {
	lp, _ := s.acc.LocalpartOf(userID)
	devices, err := tx.Devices(lp)
	if err != nil {
		return err
	}
	out := map[string]json.RawMessage{}
	for _, d := range devices {
		if len(want) > 0 && !slices.Contains(want, d.ID) {
			continue
		}
		js, err := tx.DeviceKeys(lp, d.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // a device that has not uploaded keys
		}
		if err != nil {
			return err
		}
		var unsigned map[string]any
		if requester != "" || s.DeviceNamesOverFederation {
			unsigned = map[string]any{"device_display_name": d.DisplayName}
		}
		out[d.ID] = withSignatures(js, ownSignatures(tx.KeySignatures(lp, d.ID), userID, ""), unsigned)
	}
	resp.DeviceKeys[userID] = out
	return s.addCrossSigning(tx, resp, lp, userID, requester)
}

// addCrossSigning adds a local user's cross-signing keys to a query
// response for requester.
func (s *Service) addCrossSigning(tx *store.Tx, resp *queryResp, lp, userID, requester string) error {
	for _, k := range []struct {
		usage string
		into  map[string]json.RawMessage
	}{
		{store.UsageMaster, resp.MasterKeys},
		{store.UsageSelfSigning, resp.SelfSigningKeys},
		{store.UsageUserSigning, resp.UserSigningKeys},
	} {
		if k.usage == store.UsageUserSigning && userID != requester {
			continue
		}
		js, err := tx.CrossSigningKey(lp, k.usage)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if k.usage == store.UsageMaster {
			js = withSignatures(js, ownSignatures(tx.KeySignatures(lp, publicKey(js)), userID, requester), nil)
		}
		k.into[userID] = js
	}
	return nil
}

// ownSignatures keeps the signatures made by the key's owner, and those
// made by requester ("" for none).
func ownSignatures(sigs map[string]map[string]string, owner, requester string) map[string]map[string]string {
	for signer := range sigs {
		if signer != owner && signer != requester {
			delete(sigs, signer)
		}
	}
	return sigs
}

// publicKey returns the public key of a stored cross-signing key.
func publicKey(js json.RawMessage) string {
	var o signedObject
	_ = json.Unmarshal(js, &o)
	for _, v := range o.Keys {
		return v
	}
	return ""
}
