package pdu

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	withHashes, err := insertKey(hashable, "origin", `"hashes":{"sha256":"`+base64.RawStdEncoding.EncodeToString(contentHash[:])+`"}`)
	if err != nil {
		return nil, err
	}

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
	if sigs, err = gmsl.CanonicalJSON(sigs); err != nil {
		return nil, err
	}
	next := "type"
	if b.StateKey != nil {
		next = "state_key"
	}
	final, err := insertKey(withHashes, next, `"signatures":`+string(sigs))
	if err != nil {
		return nil, err
	}
	res, err := impl.NewEventFromTrustedJSONWithEventID(eventID, final, false)
	if err != nil {
		return nil, err
	}
	return res, gmsl.CheckFields(res)
}

// insertKey inserts member ("key":value, canonical) into obj, a canonical
// event of a hashed-ID room version, just before its top-level key next,
// which must be present and be the first key sorting after member's.
//
// In canonical JSON the bytes "name": can only be an object key (a quote
// inside a string is escaped), and the top-level keys that sort after
// "origin", "state_key" or "type" hold numbers, strings and arrays of
// strings, never objects: so the last "next": in obj is the top-level one.
func insertKey(obj []byte, next, member string) ([]byte, error) {
	i := bytes.LastIndex(obj, []byte(`"`+next+`":`))
	if i <= 0 || obj[i-1] != ',' {
		return nil, fmt.Errorf("pdu: no top-level %q to insert before", next)
	}
	out := make([]byte, 0, len(obj)+len(member)+1)
	out = append(out, obj[:i]...)
	out = append(out, member...)
	out = append(out, ',')
	return append(out, obj[i:]...), nil
}
