package pdu

import (
	"encoding/json"
	"fmt"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// RedactsInContent reports whether v's m.room.redaction events name their
// target in content.redacts (room version 11 on) rather than in a
// top-level redacts.
func RedactsInContent(v string) bool {
	switch v {
	case "1", "2", "3", "4", "5", "6", "7", "8", "9", "10":
		return false
	}
	return true
}

func contentRedacts(content []byte) string {
	var c struct {
		Redacts string `json:"redacts"`
	}
	if json.Unmarshal(content, &c) != nil {
		return ""
	}
	return c.Redacts
}

// MayRedactOthers reports whether userID may redact events other users
// sent: their power level, given the room's create and (possibly nil)
// power levels events, reaches the redact level. The auth rules from room
// version 3 on leave this to the server (spec: "Handling redactions").
func MayRedactOthers(create, powerLevels *Event, userID string) (bool, error) {
	if create == nil {
		return false, fmt.Errorf("pdu: no create event")
	}
	if PrivilegedCreators(create.Version()) && slices.Contains(gmsl.CreatorsFromCreateEvent(create.p), userID) {
		return true, nil
	}
	if powerLevels == nil {
		// Without power levels the creator has full power and the redact
		// level is its default, 50.
		return create.Sender() == userID, nil
	}
	pl, err := gmsl.NewPowerLevelContentFromEvent(powerLevels.p)
	if err != nil {
		return false, fmt.Errorf("pdu: power levels: %w", err)
	}
	return pl.UserLevel(spec.SenderID(userID)) >= pl.Redact, nil
}
