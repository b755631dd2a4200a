package pdu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// A third-party invite is an m.room.member invite whose content carries
// third_party_invite: a block ("signed") an identity server signed when
// the invited address was bound to the target, completing the room's
// m.room.third_party_invite whose state key is the block's token.
// gomatrixserverlib checks the block's mxid and its signature against
// public_keys; this file adds the rest of the spec's rule (room version
// 12 numbering 4.1: the target not banned, the sender that of the
// m.room.third_party_invite, the single public_key counting too) and the
// signature exemption the spec gives such invites.

// ThirdPartyKey is one public key of an m.room.third_party_invite: an
// ed25519 key (unpadded base64, standard or URL-safe) and where its
// validity can be checked ("" for nowhere: valid indefinitely).
type ThirdPartyKey struct {
	PublicKey      string `json:"public_key"`
	KeyValidityURL string `json:"key_validity_url,omitempty"`
}

// ThirdPartyInviteKeys returns the keys an m.room.third_party_invite's
// content names, public_keys first, then public_key (with the top-level
// key_validity_url) unless public_keys has it already.
func ThirdPartyInviteKeys(content []byte) []ThirdPartyKey {
	var c struct {
		PublicKey      string            `json:"public_key"`
		KeyValidityURL string            `json:"key_validity_url"`
		PublicKeys     []json.RawMessage `json:"public_keys"`
	}
	if json.Unmarshal(content, &c) != nil {
		return nil
	}
	var out []ThirdPartyKey
	listed := false
	for _, raw := range c.PublicKeys {
		var k ThirdPartyKey
		if json.Unmarshal(raw, &k) != nil || k.PublicKey == "" {
			continue
		}
		out = append(out, k)
		listed = listed || sameKey(k.PublicKey, c.PublicKey)
	}
	if c.PublicKey != "" && !listed {
		out = append(out, ThirdPartyKey{PublicKey: c.PublicKey, KeyValidityURL: c.KeyValidityURL})
	}
	return out
}

// VerifyThirdPartySigned returns the key of keys that verifies one of the
// ed25519 signatures on signed (a third_party_invite's "signed" block), or
// ErrBadSignature when none does.
func VerifyThirdPartySigned(signed []byte, keys []ThirdPartyKey) (ThirdPartyKey, error) {
	var block struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if json.Unmarshal(signed, &block) != nil {
		return ThirdPartyKey{}, ErrBadSignature
	}
	for _, k := range keys {
		for signer, sigs := range block.Signatures {
			for keyID := range sigs {
				if VerifyJSONSignature(signed, signer, keyID, k.PublicKey) == nil {
					return k, nil
				}
			}
		}
	}
	return ThirdPartyKey{}, ErrBadSignature
}

// thirdPartyToken returns the token of ev's third_party_invite when ev is
// a third-party invite.
func thirdPartyToken(ev *Event) (string, bool) {
	if ev.Type() != spec.MRoomMember || ev.StateKey() == nil {
		return "", false
	}
	var c struct {
		Membership string          `json:"membership"`
		Invite     json.RawMessage `json:"third_party_invite"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil || c.Membership != spec.Invite || len(c.Invite) == 0 || bytes.Equal(c.Invite, []byte("null")) {
		return "", false
	}
	var inv struct {
		Signed struct {
			Token string `json:"token"`
		} `json:"signed"`
	}
	_ = json.Unmarshal(c.Invite, &inv)
	return inv.Signed.Token, true
}

// IsThirdPartyInvite reports whether ev is an invite completing an
// m.room.third_party_invite.
func IsThirdPartyInvite(ev *Event) bool {
	_, ok := thirdPartyToken(ev)
	return ok
}

// thirdPartyInviteRules checks a third-party invite against what the
// library's rule leaves out, and has the library count the single
// public_key of the m.room.third_party_invite in provider, as the spec
// does. Anything the library checks itself (the token's event exists,
// mxid, the signature) is left to it.
func thirdPartyInviteRules(ev *Event, provider *gmsl.AuthEvents) error {
	token, ok := thirdPartyToken(ev)
	if !ok {
		return nil
	}
	if target, _ := provider.Member(spec.SenderID(*ev.StateKey())); target != nil {
		if m, _ := target.Membership(); m == spec.Ban {
			return fmt.Errorf("%w: the target of the third-party invite is banned", ErrNotAllowed)
		}
	}
	tpi, _ := provider.ThirdPartyInvite(token)
	if tpi == nil {
		return nil
	}
	if string(tpi.SenderID()) != ev.Sender() {
		return fmt.Errorf("%w: the third-party invite's sender %s did not send the m.room.third_party_invite (%s did)", ErrNotAllowed, ev.Sender(), tpi.SenderID())
	}
	if content := withPublicKeyListed(tpi.Content()); content != nil {
		return provider.AddEvent(listedKeys{PDU: tpi, content: content})
	}
	return nil
}

// withPublicKeyListed returns an m.room.third_party_invite's content with
// its public_key added to public_keys, or nil when it is there already
// (or there is none): the library reads public_keys alone.
func withPublicKeyListed(content []byte) []byte {
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return nil
	}
	var single, url string
	if json.Unmarshal(c["public_key"], &single) != nil || single == "" {
		return nil
	}
	_ = json.Unmarshal(c["key_validity_url"], &url)
	var keys []json.RawMessage
	if raw, ok := c["public_keys"]; ok && json.Unmarshal(raw, &keys) != nil {
		return nil // malformed: the library refuses it
	}
	for _, raw := range keys {
		var k ThirdPartyKey
		if json.Unmarshal(raw, &k) == nil && sameKey(k.PublicKey, single) {
			return nil
		}
	}
	k, _ := json.Marshal(ThirdPartyKey{PublicKey: single, KeyValidityURL: url})
	c["public_keys"], _ = json.Marshal(append(keys, k))
	out, err := json.Marshal(c)
	if err != nil {
		return nil
	}
	return out
}

// listedKeys is an m.room.third_party_invite as the library's auth check
// reads it: with its public_key listed in public_keys.
type listedKeys struct {
	gmsl.PDU
	content []byte
}

func (l listedKeys) Content() []byte { return l.content }

// sameKey reports whether two unpadded base64 keys, of either alphabet,
// are the same bytes.
func sameKey(a, b string) bool {
	x, err1 := decodeKey(a)
	y, err2 := decodeKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// decodeKey decodes unpadded base64 in the standard or the URL-safe
// alphabet (the spec allows both for third-party invite keys).
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// signatureSenders is the library's userIDForSender for signature checks:
// a third-party invite needs no signature of its sender's server. The
// spec ("Validating hashes and signatures on received events"): its
// sender must match the m.room.third_party_invite's, and the server that
// actually sends it may be another, the invitee's, which built it when
// the address was bound; that server's signature the library requires of
// every invite.
func signatureSenders(ev *Event) spec.UserIDForSender {
	if IsThirdPartyInvite(ev) {
		return func(spec.RoomID, spec.SenderID) (*spec.UserID, error) { return nil, nil }
	}
	return userIDForSender
}
