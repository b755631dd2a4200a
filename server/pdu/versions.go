// Package pdu is Hearth's one seam to gomatrixserverlib: room versions,
// building and signing events, parsing untrusted ones, the auth rules,
// redaction and state resolution. Nothing else imports the library, so
// its API can change in one place.
package pdu

import (
	"fmt"
	"sort"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"hearth/server/mxerr"
)

// DefaultVersion is the room version of new rooms: domainless room IDs and
// privileged creators.
const DefaultVersion = "12"

// supported lists the room versions Hearth creates and joins, with their
// stability as /capabilities reports it.
var supported = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}

// Versions returns the supported room versions, mapped to "stable".
func Versions() map[string]string {
	out := make(map[string]string, len(supported))
	for _, v := range supported {
		out[v] = "stable"
	}
	return out
}

// SupportedVersions returns the supported room versions, in order.
func SupportedVersions() []string {
	out := append([]string(nil), supported...)
	sort.SliceStable(out, func(i, j int) bool {
		return len(out[i]) < len(out[j]) || (len(out[i]) == len(out[j]) && out[i] < out[j])
	})
	return out
}

// version returns the library's description of a supported room version,
// or M_UNSUPPORTED_ROOM_VERSION.
func version(v string) (gmsl.IRoomVersion, error) {
	for _, s := range supported {
		if s == v {
			impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(v))
			if err != nil {
				return nil, fmt.Errorf("pdu: room version %s: %w", v, err)
			}
			return impl, nil
		}
	}
	return nil, &mxerr.Error{Status: 400, Code: "M_UNSUPPORTED_ROOM_VERSION", Message: fmt.Sprintf("Room version %q is not supported", v)}
}

// Known reports whether Hearth supports room version v.
func Known(v string) bool {
	_, err := version(v)
	return err == nil
}

// DomainlessRoomIDs reports whether v's room IDs derive from the create
// event (v12 and later) rather than being chosen by the creating server.
func DomainlessRoomIDs(v string) bool {
	impl, err := version(v)
	return err == nil && impl.DomainlessRoomIDs()
}

// PrivilegedCreators reports whether v gives the room's creators infinite
// power outside the power levels (v12 and later).
func PrivilegedCreators(v string) bool {
	impl, err := version(v)
	return err == nil && impl.PrivilegedCreators()
}

// userIDForSender maps a sender to a user ID. No supported room version
// uses pseudonymous sender IDs, so the sender is the user ID.
func userIDForSender(_ spec.RoomID, sender spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(sender), true)
}

// CreatorInContent reports whether v's create event names its creator in
// content.creator (versions 1 to 10; from v11 the sender is the creator).
func CreatorInContent(v string) bool {
	switch v {
	case "1", "2", "3", "4", "5", "6", "7", "8", "9", "10":
		return true
	}
	return false
}

// ValidUserID reports whether s is a user ID of the grammar's shape: an
// @, a localpart and a valid server name (historical localparts allowed).
func ValidUserID(s string) bool {
	_, err := spec.NewUserID(s, true)
	return err == nil
}
