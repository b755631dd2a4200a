package keys

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

var passwordFlows = []accounts.Flow{{Stages: []string{accounts.StagePassword}}}

type deviceSigningReq struct {
	MasterKey      json.RawMessage    `json:"master_key"`
	SelfSigningKey json.RawMessage    `json:"self_signing_key"`
	UserSigningKey json.RawMessage    `json:"user_signing_key"`
	Auth           *accounts.AuthDict `json:"auth"`
}

// crossKey is one cross-signing key of an upload, checked.
type crossKey struct {
	usage  string
	js     json.RawMessage // canonical
	pub    string
	signed *signedObject
}

// uploadCrossSigning is POST /keys/device_signing/upload. It is behind
// UIA m.login.password except where the spec exempts it: the first upload
// (no master key yet) and a repeat of keys already held. Self-signing and
// user-signing keys must be signed by the master key (the one uploaded
// with them, else the one held).
func (s *Service) uploadCrossSigning(r *httpx.Request, in *deviceSigningReq) (*httpx.Empty, error) {
	p := r.Principal
	var upload []crossKey
	for _, f := range []struct {
		usage string
		js    json.RawMessage
	}{
		{store.UsageMaster, in.MasterKey},
		{store.UsageSelfSigning, in.SelfSigningKey},
		{store.UsageUserSigning, in.UserSigningKey},
	} {
		if len(f.js) == 0 || string(f.js) == "null" {
			continue
		}
		k, err := checkCrossKey(f.usage, f.js, p.UserID)
		if err != nil {
			return nil, err
		}
		upload = append(upload, *k)
	}

	held := map[string]json.RawMessage{}
	var deviceIDs []string
	err := s.store.View(func(tx *store.Tx) error {
		for _, usage := range []string{store.UsageMaster, store.UsageSelfSigning, store.UsageUserSigning} {
			js, err := tx.CrossSigningKey(p.Localpart, usage)
			if err == nil {
				held[usage] = js
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		devs, err := tx.Devices(p.Localpart)
		for _, d := range devs {
			deviceIDs = append(deviceIDs, d.ID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}

	masterPub := publicKey(held[store.UsageMaster])
	changed := false
	for _, k := range upload {
		if slices.Contains(deviceIDs, k.pub) {
			return nil, mxerr.Forbidden("Key ID in use: the public key of the %s key is one of your device IDs", k.usage)
		}
		if string(held[k.usage]) != string(k.js) {
			changed = true
		}
		if k.usage == store.UsageMaster {
			masterPub = k.pub
		}
	}
	for _, k := range upload {
		if k.usage == store.UsageMaster {
			continue
		}
		if masterPub == "" {
			return nil, mxerr.MissingParam("No master key is available to check the %s key against", k.usage)
		}
		if pdu.VerifyJSONSignature(k.js, p.UserID, "ed25519:"+masterPub, masterPub) != nil {
			return nil, invalidSignature("The %s key is not signed by the master key", k.usage)
		}
	}
	if !changed {
		return &httpx.Empty{}, nil // a repeat (a lost response): nothing to do, no UIA
	}
	if held[store.UsageMaster] != nil {
		if _, err := s.acc.UIA(r.Route()+" "+p.UserID, passwordFlows, in.Auth, p.Localpart); err != nil {
			return nil, err
		}
	}

	keys := map[string]json.RawMessage{}
	var replaced []string
	for _, k := range upload {
		if string(held[k.usage]) == string(k.js) {
			continue
		}
		keys[k.usage] = k.js
		if old := publicKey(held[k.usage]); old != "" && old != k.pub {
			replaced = append(replaced, old)
		}
	}
	var pos uint64
	err = s.store.Update(func(tx *store.Tx) (err error) {
		pos, err = tx.PutCrossSigningKeys(p.Localpart, keys, replaced)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.notify(pos, p.UserID)
	return &httpx.Empty{}, nil
}

// checkCrossKey validates one uploaded cross-signing key: the caller's,
// of the right usage, with exactly one ed25519 key named by itself.
func checkCrossKey(usage string, js json.RawMessage, userID string) (*crossKey, error) {
	field := usage + "_key"
	if usage == store.UsageMaster {
		field = "master_key"
	}
	o, err := parseSigned(field, js)
	if err != nil {
		return nil, err
	}
	if o.UserID != userID {
		return nil, mxerr.InvalidParam("%s must be for %s", field, userID)
	}
	if !slices.Contains(o.Usage, usage) {
		return nil, mxerr.InvalidParam("%s must have usage %q", field, usage)
	}
	if len(o.Keys) != 1 {
		return nil, mxerr.InvalidParam("%s must have exactly one key", field)
	}
	var pub string
	for id, v := range o.Keys {
		if id != "ed25519:"+v || v == "" {
			return nil, mxerr.InvalidParam("%s: key ID must be ed25519:<public key>", field)
		}
		pub = v
	}
	c, err := pdu.CanonicalJSON(js)
	if err != nil {
		return nil, mxerr.BadJSON("%s is not valid JSON", field)
	}
	return &crossKey{usage: usage, js: c, pub: pub, signed: o}, nil
}

// sigFailure is one entry of the failures of /keys/signatures/upload.
type sigFailure struct {
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
}

type signaturesResp struct {
	Failures map[string]map[string]sigFailure `json:"failures"`
}

// newSig is a checked signature ready to store.
type newSig struct {
	localpart, keyID, signerKeyID, sig string
}

// uploadSignatures is POST /keys/signatures/upload: the caller's
// signatures over their own devices (by their self-signing key), over
// their own master key (by a device), and over other users' master keys
// (by their user-signing key). Each signature is verified against the
// signing key; one that fails is reported in failures and not stored.
func (s *Service) uploadSignatures(r *httpx.Request) (any, error) {
	var in map[string]map[string]json.RawMessage
	if err := httpx.DecodeJSON(r.Body(), &in); err != nil {
		return nil, err
	}
	me := r.Principal
	resp := &signaturesResp{Failures: map[string]map[string]sigFailure{}}
	fail := func(userID, keyID, code, msg string) {
		if resp.Failures[userID] == nil {
			resp.Failures[userID] = map[string]sigFailure{}
		}
		resp.Failures[userID][keyID] = sigFailure{Errcode: code, Error: msg}
	}
	var sigs []newSig
	targets := map[string]bool{}
	err := s.store.View(func(tx *store.Tx) error {
		selfSigning := publicKey(mustKey(tx, me.Localpart, store.UsageSelfSigning))
		userSigning := publicKey(mustKey(tx, me.Localpart, store.UsageUserSigning))
		for userID, byKey := range in {
			lp, local := s.acc.LocalpartOf(userID)
			for keyID, js := range byKey {
				if !local {
					fail(userID, keyID, "M_UNRECOGNIZED", "Signing other servers' users' keys needs federation, which is not enabled")
					continue
				}
				o, err := parseSigned("the signed key", js)
				if err != nil {
					fail(userID, keyID, "M_BAD_JSON", "Not a signed key object")
					continue
				}
				// What is signed: a device of the owner, or their master key.
				stored, err := tx.DeviceKeys(lp, keyID)
				isDevice := err == nil
				if !isDevice {
					if m := mustKey(tx, lp, store.UsageMaster); m != nil && publicKey(m) == keyID {
						stored = m
					} else {
						fail(userID, keyID, "M_NOT_FOUND", "Unknown device or master key")
						continue
					}
				}
				if !sameUnsigned(stored, js) {
					fail(userID, keyID, "M_INVALID_PARAM", "The signed object does not match the key held")
					continue
				}
				// The signing key the signature must come from.
				var signerPub string
				switch {
				case userID == me.UserID && isDevice:
					signerPub = selfSigning
				case userID == me.UserID:
					signerPub = "" // a device of mine signs my master key: any of my devices
				default:
					if isDevice {
						fail(userID, keyID, "M_FORBIDDEN", "Only the owner may sign their devices")
						continue
					}
					signerPub = userSigning
				}
				var held signedObject
				_ = json.Unmarshal(stored, &held)
				added := 0
				for sigKeyID, sig := range o.Signatures[me.UserID] {
					if held.Signatures[me.UserID][sigKeyID] == sig {
						continue // already part of the key
					}
					pub := signerPub
					if userID == me.UserID && !isDevice {
						pub = devicePublicKey(tx, me.Localpart, strings.TrimPrefix(sigKeyID, "ed25519:"))
					} else if sigKeyID != "ed25519:"+signerPub {
						pub = ""
					}
					if pub == "" {
						fail(userID, keyID, "M_INVALID_SIGNATURE", "Not signed by a key that may sign it")
						continue
					}
					if pdu.VerifyJSONSignature(js, me.UserID, sigKeyID, pub) != nil {
						fail(userID, keyID, "M_INVALID_SIGNATURE", "Invalid signature")
						continue
					}
					sigs = append(sigs, newSig{localpart: lp, keyID: keyID, signerKeyID: sigKeyID, sig: sig})
					added++
				}
				if added > 0 {
					targets[userID] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(sigs) == 0 {
		return resp, nil
	}
	changes := map[string]uint64{}
	err = s.store.Update(func(tx *store.Tx) error {
		clear(changes)
		for _, sg := range sigs {
			if err := tx.PutKeySignature(sg.localpart, sg.keyID, me.UserID, sg.signerKeyID, sg.sig); err != nil {
				return err
			}
		}
		for userID := range targets {
			pos, err := tx.RecordDeviceListChange(userID)
			if err != nil {
				return err
			}
			changes[userID] = pos
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for userID, pos := range changes {
		s.notify(pos, userID)
	}
	return resp, nil
}

// mustKey returns a user's cross-signing key of a usage, or nil.
func mustKey(tx *store.Tx, lp, usage string) json.RawMessage {
	js, err := tx.CrossSigningKey(lp, usage)
	if err != nil {
		return nil
	}
	return js
}

// devicePublicKey returns a device's ed25519 key, or "".
func devicePublicKey(tx *store.Tx, lp, deviceID string) string {
	js, err := tx.DeviceKeys(lp, deviceID)
	if err != nil {
		return ""
	}
	var o signedObject
	_ = json.Unmarshal(js, &o)
	return o.Keys["ed25519:"+deviceID]
}

// sameUnsigned reports whether two key objects are the same apart from
// their signatures and unsigned data.
func sameUnsigned(a, b json.RawMessage) bool {
	strip := func(js json.RawMessage) []byte {
		var m map[string]json.RawMessage
		if json.Unmarshal(js, &m) != nil {
			return nil
		}
		delete(m, "signatures")
		delete(m, "unsigned")
		out, _ := json.Marshal(m)
		c, err := pdu.CanonicalJSON(out)
		if err != nil {
			return nil
		}
		return c
	}
	ca, cb := strip(a), strip(b)
	return ca != nil && string(ca) == string(cb)
}
