package federation_test

import "crypto/ed25519"

func ed25519Public(seed []byte) []byte {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
