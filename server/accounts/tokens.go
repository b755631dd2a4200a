package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// newToken returns prefix followed by 256 random bits. Tokens are stored
// only as hashToken digests: with that much entropy a plain SHA-256 is as
// strong as a slow hash, and costs nothing per request.
func newToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

const deviceIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// newDeviceID returns ten random capital letters, as Synapse does.
func newDeviceID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = deviceIDChars[int(b[i])%len(deviceIDChars)]
	}
	return string(b)
}
