package pdu

import (
	"encoding/json"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// PolicyKeyID is the key ID of a policy server's signature on an event
// (Server-Server API, "Validating Policy Server signatures"): always this
// one for its ed25519 key, which the room's m.room.policy state event
// carries rather than the policy server's published keys.
const PolicyKeyID = "ed25519:policy_server"

// VerifyEventSignature checks the signature by server's key keyID on
// ev as events are signed (over its redacted form), with pubKey, an
// unpadded base64 ed25519 public key in the standard or the URL-safe
// alphabet (the spec's own m.room.policy example uses the latter). A
// missing or wrong signature, or a key that is not one, is
// ErrBadSignature.
func VerifyEventSignature(ev *Event, server, keyID, pubKey string) error {
	impl, err := version(ev.Version())
	if err != nil {
		return err
	}
	redacted, err := impl.RedactEventJSON(ev.JSON())
	if err != nil {
		return ErrBadSignature
	}
	return VerifyJSONSignature(redacted, server, keyID, pubKey)
}

// Signature returns the signature by server's key keyID on ev, "" if it
// has none.
func (e *Event) Signature(server, keyID string) string {
	var obj struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if json.Unmarshal(e.JSON(), &obj) != nil {
		return ""
	}
	var sig string
	if json.Unmarshal(obj.Signatures[server][keyID], &sig) != nil {
		return ""
	}
	return sig
}

// WithSignature returns ev carrying sig as server's signature by key
// keyID, every other signature kept: a policy server answers with its
// own signature only, and its server may be the event's origin.
func WithSignature(ev *Event, server, keyID, sig string) (*Event, error) {
	impl, err := version(ev.Version())
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &obj); err != nil {
		return nil, err
	}
	sigs := map[string]map[string]json.RawMessage{}
	if raw, ok := obj["signatures"]; ok {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return nil, err
		}
	}
	if sigs[server] == nil {
		sigs[server] = map[string]json.RawMessage{}
	}
	if sigs[server][keyID], err = json.Marshal(sig); err != nil {
		return nil, err
	}
	if obj["signatures"], err = json.Marshal(sigs); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	if raw, err = gmsl.CanonicalJSON(raw); err != nil {
		return nil, err
	}
	p, err := impl.NewEventFromTrustedJSON(raw, ev.Redacted())
	if err != nil {
		return nil, err
	}
	return &Event{p: p}, nil
}
