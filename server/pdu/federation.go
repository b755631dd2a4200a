package pdu

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// SignJSON returns obj, a JSON object, signed by serverName's key keyID
// ("ed25519:..."); signatures already on it are kept, so a notary can add
// its own to a server's key response.
func SignJSON(serverName, keyID string, key ed25519.PrivateKey, obj []byte) ([]byte, error) {
	return gmsl.SignJSON(serverName, gmsl.KeyID(keyID), key, obj)
}

// requestJSON is the canonical JSON object an X-Matrix signature covers
// (Server-Server API, "Request Authentication"); content is omitted when
// the request has no body.
func requestJSON(method, uri, origin, destination string, content []byte) ([]byte, error) {
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": destination}
	if len(content) > 0 {
		if !json.Valid(content) {
			return nil, ErrBadSignature
		}
		obj["content"] = json.RawMessage(content)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return gmsl.CanonicalJSON(raw)
}

// SignRequest returns the unpadded base64 signature of a federation
// request from origin to destination, for its X-Matrix header. uri is the
// path and query as sent; content is the JSON body, or nil.
func SignRequest(key ed25519.PrivateKey, method, uri, origin, destination string, content []byte) (string, error) {
	msg, err := requestJSON(method, uri, origin, destination, content)
	if err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg)), nil
}

// VerifyRequest checks sig, an X-Matrix signature, over a federation
// request with pubKey, origin's unpadded base64 ed25519 key. Any mismatch
// is ErrBadSignature.
func VerifyRequest(pubKey, sig, method, uri, origin, destination string, content []byte) error {
	pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(pubKey, "="))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return ErrBadSignature
	}
	s, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(sig, "="))
	if err != nil || len(s) != ed25519.SignatureSize {
		return ErrBadSignature
	}
	msg, err := requestJSON(method, uri, origin, destination, content)
	if err != nil {
		return ErrBadSignature
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), msg, s) {
		return ErrBadSignature
	}
	return nil
}
