package pdu

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// A policy server's signature covers the event as events are signed
// (its redacted form), verifies with the key from m.room.policy in
// either base64 alphabet, survives being carried onto a copy of the
// event with the origin's signature and ID unchanged, and a signature
// by any other key under its name and key ID is none.
func TestPolicySignature(t *testing.T) {
	origin := testSigner(t)
	_, psKey, _ := ed25519.GenerateKey(nil)
	ps := Signer{ServerName: "policy.test", KeyID: PolicyKeyID, Key: psKey}
	pub := psKey.Public().(ed25519.PublicKey)
	std, urlSafe := base64.RawStdEncoding.EncodeToString(pub), base64.RawURLEncoding.EncodeToString(pub)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	originKey := func(_ context.Context, server, keyID string, _ int64) (string, error) {
		if server != origin.ServerName || keyID != origin.KeyID {
			return "", fmt.Errorf("no key %s of %s", keyID, server)
		}
		return base64.RawStdEncoding.EncodeToString(origin.Key.Public().(ed25519.PublicKey)), nil
	}
	for _, v := range SupportedVersions() {
		t.Run("v"+v, func(t *testing.T) {
			_, ev := chain(t, v, origin)
			if err := VerifyEventSignature(ev, ps.ServerName, PolicyKeyID, std); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("an event the policy server never signed: %v, want ErrBadSignature", err)
			}
			signed, err := AddSignature(ev, ps)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{std, urlSafe} {
				if err := VerifyEventSignature(signed, ps.ServerName, PolicyKeyID, key); err != nil {
					t.Errorf("key %s: %v", key, err)
				}
			}
			redacted, err := signed.Redact()
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyEventSignature(redacted, ps.ServerName, PolicyKeyID, std); err != nil {
				t.Errorf("the redacted event: %v", err)
			}

			sig := signed.Signature(ps.ServerName, PolicyKeyID)
			carried, err := WithSignature(ev, ps.ServerName, PolicyKeyID, sig)
			if err != nil {
				t.Fatal(err)
			}
			if carried.ID() != ev.ID() || carried.Signature(origin.ServerName, origin.KeyID) == "" {
				t.Fatalf("carrying the signature changed the event: %s", carried.JSON())
			}
			if err := VerifyEventSignature(carried, ps.ServerName, PolicyKeyID, std); err != nil {
				t.Errorf("the carried signature: %v", err)
			}
			if err := VerifySignatures(context.Background(), carried, originKey); err != nil {
				t.Errorf("the origin's signature, beside the policy server's: %v", err)
			}

			forged, err := AddSignature(ev, Signer{ServerName: ps.ServerName, KeyID: PolicyKeyID, Key: otherKey})
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyEventSignature(forged, ps.ServerName, PolicyKeyID, std); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("a signature by another key: %v, want ErrBadSignature", err)
			}
		})
	}
}

// When the policy server is also the event's origin, its policy key
// signs beside its published key under the same name: checking the
// origin's signature skips that key (the spec: it is not published, so
// no key server is asked for it), and that key alone is no origin
// signature.
func TestOriginSignatureSkipsPolicyKey(t *testing.T) {
	origin := testSigner(t)
	_, psKey, _ := ed25519.GenerateKey(nil)
	_, ev := chain(t, "11", origin)
	both, err := AddSignature(ev, Signer{ServerName: origin.ServerName, KeyID: PolicyKeyID, Key: psKey})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(_ context.Context, server, keyID string, _ int64) (string, error) {
		if keyID == PolicyKeyID {
			t.Errorf("asked for %s's key %s", server, keyID)
			return "", errors.New("not published")
		}
		return base64.RawStdEncoding.EncodeToString(origin.Key.Public().(ed25519.PublicKey)), nil
	}
	// The signatures are taken in map order: enough rounds meet the
	// policy key first.
	for range 32 {
		if err := VerifySignatures(context.Background(), both, keys); err != nil {
			t.Fatalf("origin and policy signatures: %v", err)
		}
	}

	policyOnly := withoutSignature(t, both, origin.ServerName, origin.KeyID)
	if err := VerifySignatures(context.Background(), policyOnly, keys); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("the policy signature alone: %v, want ErrBadSignature", err)
	}
}

// withoutSignature returns ev without server's signature by keyID.
func withoutSignature(t *testing.T, ev *Event, server, keyID string) *Event {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(ev.JSON(), &obj); err != nil {
		t.Fatal(err)
	}
	delete(obj["signatures"].(map[string]any)[server].(map[string]any), keyID)
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(ev.Version(), raw, false)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
