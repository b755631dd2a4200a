package keys

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"

	"hearth/server/mxerr"
	"hearth/store"
)

// What other servers learn of our users' keys: the answers of the
// federation key endpoints, and the m.device_list_update and
// m.signing_key_update EDUs that tell the servers sharing a room with a
// user what changed. Device display names travel with them, as the
// spec's EDU and Synapse's allow_device_name_lookup_over_federation
// (which Complement turns on) have it: a peer's client shows which of a
// user's devices it is encrypting for.

// LocalUserDevices answers GET /user/devices/{userId} for a local user:
// their devices with keys, their master and self-signing keys, and the
// stream ID of the last device-list update other servers were sent, so
// that a server that fetched this list ignores the updates it covers.
func (s *Service) LocalUserDevices(userID string) (*UserDevices, error) {
	lp, ok := s.acc.LocalpartOf(userID)
	if !ok {
		return nil, mxerr.InvalidParam("User %s is not hosted on this server", userID)
	}
	out := &UserDevices{UserID: userID, Devices: []UserDevice{}}
	err := s.store.View(func(tx *store.Tx) error {
		f, err := tx.FederatedDevices(userID)
		if err != nil {
			return err
		}
		out.StreamID = f.StreamID
		devices, err := s.federatedDevices(tx, lp, userID)
		if err != nil {
			return err
		}
		for _, id := range sortedKeys(devices) {
			if d := devices[id]; d.keys != nil {
				out.Devices = append(out.Devices, UserDevice{DeviceID: id, DisplayName: d.name, Keys: d.keys})
			}
		}
		cs, err := s.federatedCrossSigning(tx, lp, userID)
		out.MasterKey, out.SelfSigningKey = cs[store.UsageMaster], cs[store.UsageSelfSigning]
		return err
	})
	return out, err
}

// LocalKeysForServer answers POST /user/keys/query: the keys of the local
// users asked for, as another server may see them. Other users are left
// out.
func (s *Service) LocalKeysForServer(deviceKeys map[string][]string) (*FederatedQueryResp, error) {
	resp := newQueryResp()
	local, _ := partition(deviceKeys, s.isLocal)
	err := s.store.View(func(tx *store.Tx) error {
		for userID, want := range local {
			if err := s.addLocalKeys(tx, resp, userID, want, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &FederatedQueryResp{DeviceKeys: resp.DeviceKeys, MasterKeys: resp.MasterKeys, SelfSigningKeys: resp.SelfSigningKeys}, nil
}

// ClaimForServer answers POST /user/keys/claim: one key per device asked
// for, of local users only.
func (s *Service) ClaimForServer(oneTimeKeys map[string]map[string]string) (*FederatedClaimResp, error) {
	local, _ := s.partition(oneTimeKeys)
	keys, err := s.claimLocal(local)
	if err != nil {
		return nil, err
	}
	return &FederatedClaimResp{OneTimeKeys: keys}, nil
}

// DeviceListEDUs returns the EDUs (each {"edu_type", "content"}) that
// tell other servers what changed in a local user's devices and
// cross-signing keys since they were last told, and records them as
// told: one m.device_list_update per device added, changed (keys or
// display name) or deleted, each with its own stream ID and the previous
// one as prev_id, and one m.signing_key_update if the cross-signing keys
// changed. Nothing new returns none.
func (s *Service) DeviceListEDUs(userID string) ([][]byte, error) {
	lp, ok := s.acc.LocalpartOf(userID)
	if !ok {
		return nil, nil
	}
	var edus [][]byte
	err := s.store.Update(func(tx *store.Tx) error {
		edus = nil
		f, err := tx.FederatedDevices(userID)
		if err != nil {
			return err
		}
		devices, err := s.federatedDevices(tx, lp, userID)
		if err != nil {
			return err
		}
		gone := []string{}
		for id := range f.Devices {
			if _, ok := devices[id]; !ok {
				gone = append(gone, id)
			}
		}
		slices.Sort(gone)
		next := func(u *DeviceListUpdate) {
			u.UserID, u.StreamID = userID, f.StreamID+1
			if f.StreamID > 0 {
				u.PrevID = []int64{f.StreamID}
			}
			f.StreamID++
			edus = append(edus, edu("m.device_list_update", u))
		}
		for _, id := range sortedKeys(devices) {
			d := devices[id].digest()
			if have, ok := f.Devices[id]; ok && have == d {
				continue
			}
			f.Devices[id] = d
			next(&DeviceListUpdate{DeviceID: id, DisplayName: devices[id].name, Keys: devices[id].keys})
		}
		for _, id := range gone {
			delete(f.Devices, id)
			next(&DeviceListUpdate{DeviceID: id, Deleted: true})
		}
		cs, err := s.federatedCrossSigning(tx, lp, userID)
		if err != nil {
			return err
		}
		changed := false
		for _, usage := range []string{store.UsageMaster, store.UsageSelfSigning} {
			if d := digest(cs[usage]); f.CrossSigning[usage] != d {
				f.CrossSigning[usage], changed = d, true
			}
		}
		if changed && (cs[store.UsageMaster] != nil || cs[store.UsageSelfSigning] != nil) {
			edus = append(edus, edu("m.signing_key_update", &SigningKeyUpdate{UserID: userID,
				MasterKey: cs[store.UsageMaster], SelfSigningKey: cs[store.UsageSelfSigning]}))
		}
		if len(edus) == 0 {
			return nil
		}
		return tx.PutFederatedDevices(userID, f)
	})
	return edus, err
}

// DeviceListSnapshot returns one m.device_list_update EDU per device of
// a local user, as DeviceListEDUs last told other servers of it, for
// servers that just came to share a room with the user and so have not
// been following their list. Each carries the user's latest stream ID
// and no prev_id: a server that has nothing cached fetches the whole
// list (GET /user/devices answers with that stream ID, so the updates
// that follow chain on from it), and one that is up to date ignores
// them. Call DeviceListEDUs first, so that nothing is left untold.
func (s *Service) DeviceListSnapshot(userID string) ([][]byte, error) {
	lp, ok := s.acc.LocalpartOf(userID)
	if !ok {
		return nil, nil
	}
	var edus [][]byte
	err := s.store.View(func(tx *store.Tx) error {
		f, err := tx.FederatedDevices(userID)
		if err != nil || f.StreamID == 0 {
			return err // never told anyone of a device: nothing to follow on from
		}
		devices, err := s.federatedDevices(tx, lp, userID)
		if err != nil {
			return err
		}
		for _, id := range sortedKeys(devices) {
			if _, told := f.Devices[id]; told {
				edus = append(edus, edu("m.device_list_update", &DeviceListUpdate{UserID: userID, DeviceID: id,
					DisplayName: devices[id].name, StreamID: f.StreamID, Keys: devices[id].keys, JoinAnnouncement: true}))
			}
		}
		return nil
	})
	return edus, err
}

// fedDevice is a local user's device as other servers see it.
type fedDevice struct {
	name string
	keys json.RawMessage // nil for a device without keys
}

// digest identifies what other servers were told of a device.
func (d fedDevice) digest() string {
	return digest(d.keys) + " " + d.name
}

// federatedDevices returns a local user's devices by ID, each with its
// display name and its keys as other servers see them (the owner's
// signatures merged in).
func (s *Service) federatedDevices(tx *store.Tx, lp, userID string) (map[string]fedDevice, error) {
	devices, err := tx.Devices(lp)
	if err != nil {
		return nil, err
	}
	out := make(map[string]fedDevice, len(devices))
	for _, d := range devices {
		name := ""
		if s.DeviceNamesOverFederation {
			name = d.DisplayName
		}
		js, err := tx.DeviceKeys(lp, d.ID)
		if errors.Is(err, store.ErrNotFound) {
			out[d.ID] = fedDevice{name: name}
			continue
		}
		if err != nil {
			return nil, err
		}
		out[d.ID] = fedDevice{name: name, keys: withSignatures(js, ownSignatures(tx.KeySignatures(lp, d.ID), userID, ""), nil)}
	}
	return out, nil
}

// federatedCrossSigning returns a local user's master and self-signing
// keys by usage as other servers see them.
func (s *Service) federatedCrossSigning(tx *store.Tx, lp, userID string) (map[string]json.RawMessage, error) {
	resp := newQueryResp()
	if err := s.addCrossSigning(tx, resp, lp, userID, ""); err != nil {
		return nil, err
	}
	return map[string]json.RawMessage{store.UsageMaster: resp.MasterKeys[userID], store.UsageSelfSigning: resp.SelfSigningKeys[userID]}, nil
}

// edu is an EDU as a transaction carries it.
func edu(typ string, content any) []byte {
	b, _ := json.Marshal(map[string]any{"edu_type": typ, "content": content})
	return b
}

// digest identifies a key object's content ("" for none).
func digest(js json.RawMessage) string {
	if js == nil {
		return "none"
	}
	h := sha256.Sum256(js)
	return base64.RawStdEncoding.EncodeToString(h[:])
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
