package pdu

import (
	"crypto/ed25519"
	"errors"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// ErrBadSignature means a signed JSON object's signature is missing or
// does not verify.
var ErrBadSignature = errors.New("pdu: signature does not verify")

// VerifyJSONSignature checks the signature by signer's key keyID
// ("ed25519:...") over obj, a signed JSON object (its "signatures" and
// "unsigned" are not covered), with pubKey, an unpadded base64 ed25519
// public key (standard or URL-safe alphabet). A missing or wrong signature, or a key that is not one, is
// ErrBadSignature.
func VerifyJSONSignature(obj []byte, signer, keyID, pubKey string) error {
	if !strings.HasPrefix(keyID, "ed25519:") {
		return ErrBadSignature
	}
	raw, err := decodeKey(pubKey)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return ErrBadSignature
	}
	if err := gmsl.VerifyJSON(signer, gmsl.KeyID(keyID), ed25519.PublicKey(raw), obj); err != nil {
		return ErrBadSignature
	}
	return nil
}

// CanonicalJSON returns the canonical form of a JSON value, so that two
// encodings of the same object compare equal.
func CanonicalJSON(js []byte) ([]byte, error) {
	return gmsl.CanonicalJSON(js)
}
