package rooms

import (
	"hearth/server/mxerr"
	"hearth/store"
)

// Report stores a user's report of a room, or of one of its events when
// eventID is set, for the server's admins. An event report needs the
// reporter to be joined and the event to exist in the room (404
// otherwise, as the spec says, so that it tells nothing); a room report
// needs only the room to exist.
func (s *Service) Report(reporter, roomID, eventID, reason string, score *int) error {
	err := s.store.Update(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if eventID != "" {
			m, err := tx.MembershipOf(reporter, room.NID)
			rec, evErr := servableEvent(tx, eventID)
			if err != nil || m.Membership != "join" || evErr != nil || rec.RoomNID != room.NID {
				return mxerr.NotFound("Event not found, or you are not joined to its room")
			}
		}
		return tx.AddReport(&store.Report{Reporter: reporter, RoomID: roomID, EventID: eventID, Reason: reason, Score: score, TS: s.now().UnixMilli()})
	})
	if err == nil {
		s.log.Info("report filed", "reporter", reporter, "room", roomID, "event", eventID)
	}
	return err
}
