package pdu

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// buildHashed finishes b, an event of a room version whose event IDs are
// hashes (v3 and later), as the library's EventBuilder.Build does and
// with the same bytes as its result, but canonicalising, redacting and
// hashing once instead of four times: the library's Build marshals and
// re-parses the event at every step and then computes the event ID over
// again on first use, which made it most of the CPU a send costs. The
// rules stay the library's (its canonical JSON, its redaction algorithm,
// its field checks); only the steps between them are ours, and
// TestBuildMatchesLibrary holds the two byte for byte.
func buildHashed(impl gmsl.IRoomVersion, b *gmsl.EventBuilder, now time.Time, s Signer) (gmsl.PDU, error) {
	if len(b.Signature) > 0 || len(b.Unsigned) > 0 {
		// Never set by Proto; the library knows how to keep them.
		return b.Build(now, spec.ServerName(s.ServerName), gmsl.KeyID(s.KeyID), s.Key)
	}
	// The fields the library marshals, less its event_id (deleted again
	// for these versions) and its empty signatures and unsigned.
	ev := struct {
		*gmsl.EventBuilder
		OriginServerTS spec.Timestamp  `json:"origin_server_ts"`
		Origin         spec.ServerName `json:"origin"`
		PrevState      *[]string       `json:"prev_state,omitempty"`
	}{EventBuilder: b, OriginServerTS: spec.AsTimestamp(now), Origin: spec.ServerName(s.ServerName)}
	if b.StateKey != nil {
		ev.PrevState = &[]string{} // what Synapse expects of a state event, as the library does
	}
	raw, err := json.Marshal(&ev)
	if err != nil {
		return nil, err
	}
	// The room version's number rules (v6+), on the JSON as given: its
	// canonical form would hide a "-0".
	if err := impl.CheckCanonicalJSON(raw); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	// The content hash covers the event without hashes, signatures and
	// unsigned: here, all of it.
	hashable, err := gmsl.CanonicalJSON(raw)
	if err != nil {
		return nil, err
	}
	contentHash := sha256.Sum256(hashable)
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(hashable, &fields); err != nil {
		return nil, err
	}
	fields["hashes"] = json.RawMessage(`{"sha256":"` + base64.RawStdEncoding.EncodeToString(contentHash[:]) + `"}`)
	withHashes := canonicalObject(fields)

	// The signature and the event ID both cover the redacted event
	// without signatures and unsigned: the same bytes.
	redacted, err := impl.RedactEventJSON(withHashes)
	if err != nil {
		return nil, err
	}
	signed, err := gmsl.CanonicalJSON(redacted)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(s.Key, signed)
	ref := sha256.Sum256(signed)
	enc := base64.RawURLEncoding
	if impl.EventIDFormat() == gmsl.EventIDFormatV2 {
		enc = base64.RawStdEncoding
	}
	eventID := "$" + enc.EncodeToString(ref[:])

	sigs, err := json.Marshal(map[string]map[string]string{s.ServerName: {s.KeyID: base64.RawStdEncoding.EncodeToString(sig)}})
	if err != nil {
		return nil, err
	}
	if fields["signatures"], err = gmsl.CanonicalJSON(sigs); err != nil {
		return nil, err
	}
	final := canonicalObject(fields)
	res, err := impl.NewEventFromTrustedJSONWithEventID(eventID, final, false)
	if err != nil {
		return nil, err
	}
	return res, gmsl.CheckFields(res)
}

// canonicalObject writes an object whose values are canonical JSON with
// its keys sorted, which makes it canonical JSON too. The keys are the
// library's field names, which need no escaping.
func canonicalObject(fields map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(fields))
	n := 2
	for k, v := range fields {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Grow(n)
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('"')
		buf.WriteString(k)
		buf.WriteString(`":`)
		buf.Write(fields[k])
	}
	buf.WriteByte('}')
	return buf.Bytes()
}
