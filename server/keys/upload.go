package keys

import (
	"encoding/json"
	"errors"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

type uploadReq struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

type uploadResp struct {
	OneTimeKeyCounts map[string]int `json:"one_time_key_counts"`
}

// upload is POST /keys/upload. Everything is checked before anything is
// stored: device keys must be the caller's own device's and, when they
// carry its self-signature, signed by its ed25519 key; signed one-time and fallback keys signed by it too, and a
// one-time key ID already held with other content is refused, so a bad
// upload stores nothing.
func (s *Service) upload(r *httpx.Request, in *uploadReq) (*uploadResp, error) {
	p := r.Principal
	var devKeys json.RawMessage
	var signingKey string // the device's ed25519 key, once known
	if len(in.DeviceKeys) > 0 && string(in.DeviceKeys) != "null" {
		o, err := parseSigned("device_keys", in.DeviceKeys)
		if err != nil {
			return nil, err
		}
		if o.UserID != p.UserID || o.DeviceID != p.DeviceID {
			return nil, mxerr.InvalidParam("device_keys must be for the calling device (%s, %s)", p.UserID, p.DeviceID)
		}
		if signingKey = o.Keys["ed25519:"+p.DeviceID]; signingKey == "" {
			return nil, mxerr.InvalidParam("device_keys has no ed25519:%s key", p.DeviceID)
		}
		// A self-signature that is there must be right. One that is
		// missing is accepted, as Synapse accepts it: every client signs,
		// and whoever uses the keys checks the signature for themself.
		if _, signed := o.Signatures[p.UserID]["ed25519:"+p.DeviceID]; signed {
			if err := pdu.VerifyJSONSignature(in.DeviceKeys, p.UserID, "ed25519:"+p.DeviceID, signingKey); err != nil {
				return nil, invalidSignature("device_keys are not signed by the device's ed25519 key")
			}
		}
		if devKeys, err = pdu.CanonicalJSON(in.DeviceKeys); err != nil {
			return nil, mxerr.BadJSON("device_keys is not valid JSON")
		}
	}
	if signingKey == "" && (len(in.OneTimeKeys) > 0 || len(in.FallbackKeys) > 0) {
		err := s.store.View(func(tx *store.Tx) error {
			js, err := tx.DeviceKeys(p.Localpart, p.DeviceID)
			if err == nil {
				var o signedObject
				_ = json.Unmarshal(js, &o)
				signingKey = o.Keys["ed25519:"+p.DeviceID]
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	otks, err := s.checkKeys("one_time_keys", in.OneTimeKeys, p.UserID, p.DeviceID, signingKey)
	if err != nil {
		return nil, err
	}
	fallbacks, err := s.checkKeys("fallback_keys", in.FallbackKeys, p.UserID, p.DeviceID, signingKey)
	if err != nil {
		return nil, err
	}
	seenAlg := map[string]bool{}
	for id := range fallbacks {
		alg, _, _ := strings.Cut(id, ":")
		if seenAlg[alg] {
			return nil, mxerr.InvalidParam("fallback_keys may hold one key per algorithm")
		}
		seenAlg[alg] = true
	}

	var pos uint64
	var counts map[string]int
	err = s.store.Update(func(tx *store.Tx) error {
		pos = 0
		if devKeys != nil {
			var err error
			if pos, err = tx.PutDeviceKeys(p.Localpart, p.DeviceID, devKeys); err != nil {
				return err
			}
		}
		for id, js := range otks {
			old, err := tx.OneTimeKey(p.Localpart, p.DeviceID, id)
			switch {
			case err == nil && string(old) == string(js):
				continue // a retried upload
			case err == nil:
				return mxerr.InvalidParam("One-time key %s already exists with different content", id)
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			if err := tx.PutOneTimeKey(p.Localpart, p.DeviceID, id, js); err != nil {
				return err
			}
		}
		for id, js := range fallbacks {
			if err := tx.PutFallbackKey(p.Localpart, p.DeviceID, id, js); err != nil {
				return err
			}
		}
		counts = tx.OneTimeKeyCounts(p.Localpart, p.DeviceID)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("Unknown device") // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	if pos != 0 {
		s.notify(pos, p.UserID)
	}
	return &uploadResp{OneTimeKeyCounts: withDefaultCount(counts)}, nil
}

// withDefaultCount adds signed_curve25519: 0 when absent: clients decide
// to upload keys from that count and some treat a missing one as "full".
func withDefaultCount(counts map[string]int) map[string]int {
	if counts == nil {
		counts = map[string]int{}
	}
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	return counts
}

// checkKeys validates uploaded one-time or fallback keys and returns them
// in canonical JSON by key ID. A key is a string (an unsigned key) or an
// object with a string "key"; a signed key (algorithm "signed_...") must
// carry a valid signature by the device's ed25519 key.
func (s *Service) checkKeys(field string, keys map[string]json.RawMessage, userID, deviceID, signingKey string) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(keys))
	for id, js := range keys {
		alg, kid, ok := strings.Cut(id, ":")
		if !ok || alg == "" || kid == "" {
			return nil, mxerr.InvalidParam("%s: key ID %q must be <algorithm>:<key ID>", field, id)
		}
		var str string
		var obj struct {
			Key string `json:"key"`
		}
		switch {
		case json.Unmarshal(js, &str) == nil && str != "":
			if strings.HasPrefix(alg, "signed_") {
				return nil, invalidSignature("%s: %s must be a signed key object", field, id)
			}
		case len(js) > 0 && js[0] == '{' && json.Unmarshal(js, &obj) == nil && obj.Key != "":
			if strings.HasPrefix(alg, "signed_") {
				if signingKey == "" {
					return nil, mxerr.InvalidParam("%s: upload the device's identity keys before signed keys", field)
				}
				if err := pdu.VerifyJSONSignature(js, userID, "ed25519:"+deviceID, signingKey); err != nil {
					return nil, invalidSignature("%s: %s is not signed by the device's ed25519 key", field, id)
				}
			}
		default:
			return nil, mxerr.BadJSON("%s: %s must be a key string or an object with a key", field, id)
		}
		c, err := pdu.CanonicalJSON(js)
		if err != nil {
			return nil, mxerr.BadJSON("%s: %s is not valid JSON", field, id)
		}
		out[id] = c
	}
	return out, nil
}

type claimReq struct {
	Timeout     int                          `json:"timeout"`
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
}

type claimResp struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	Failures    map[string]any                                   `json:"failures"`
}

// claim is POST /keys/claim: for each device asked for, one one-time key
// of the algorithm, else its fallback key (marked used); devices with
// neither, or unknown, are left out, as the spec has it.
func (s *Service) claim(r *httpx.Request, in *claimReq) (*claimResp, error) {
	if in.OneTimeKeys == nil {
		return nil, mxerr.MissingParam("Missing one_time_keys")
	}
	resp := &claimResp{OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}, Failures: map[string]any{}}
	local, remote := s.partition(in.OneTimeKeys)
	if len(local) > 0 {
		claimed, err := s.claimLocal(local)
		if err != nil {
			return nil, err
		}
		resp.OneTimeKeys = claimed
	}
	s.claimRemote(r.Context(), resp, remote, requestTimeout(in.Timeout))
	return resp, nil
}

// claimLocal claims, for each device of local users asked for, one key of
// the algorithm; devices with none are left out.
func (s *Service) claimLocal(local map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]map[string]json.RawMessage{}
	err := s.store.Update(func(tx *store.Tx) error {
		clear(out)
		for userID, devices := range local {
			lp, _ := s.acc.LocalpartOf(userID)
			for deviceID, alg := range devices {
				k, err := tx.ClaimKey(lp, deviceID, alg)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if out[userID] == nil {
					out[userID] = map[string]map[string]json.RawMessage{}
				}
				out[userID][deviceID] = map[string]json.RawMessage{k.KeyID: k.Key}
			}
		}
		return nil
	})
	return out, err
}

// DeviceKeyCounts returns, for /sync, a device's unclaimed one-time key
// counts by algorithm and the algorithms of its unused fallback keys.
func (s *Service) DeviceKeyCounts(localpart, deviceID string) (map[string]int, []string, error) {
	var counts map[string]int
	var fallbacks []string
	err := s.store.View(func(tx *store.Tx) (err error) {
		counts = tx.OneTimeKeyCounts(localpart, deviceID)
		fallbacks, err = tx.UnusedFallbackKeyTypes(localpart, deviceID)
		return err
	})
	return withDefaultCount(counts), fallbacks, err
}
