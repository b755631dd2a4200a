package rooms

import (
	"encoding/json"
	"errors"

	"hearth/server/mxerr"
	"hearth/store"
)

// SetReceipt records userID's receipt of type typ (m.read or
// m.read.private) up to eventID in roomID, for threadID ("" unthreaded,
// "main", or a thread root's event ID), and wakes the room's syncs.
func (s *Service) SetReceipt(userID, roomID, typ, eventID, threadID string) error {
	var pos uint64
	err := s.store.Update(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Unknown room")
		}
		if err != nil {
			return err
		}
		if m, err := tx.MembershipOf(userID, room.NID); err != nil || m.Membership != "join" {
			return mxerr.Forbidden("You are not joined to this room")
		}
		rec, err := tx.EventByID(eventID)
		if errors.Is(err, store.ErrNotFound) || err == nil && rec.RoomNID != room.NID {
			return mxerr.NotFound("Event not found")
		}
		if err != nil {
			return err
		}
		if threadID != "" && threadID != "main" {
			if root, err := tx.EventByID(threadID); err != nil || root.RoomNID != room.NID {
				return mxerr.BadJSON("thread_id must be \"main\" or a thread root in this room")
			}
		}
		pos, err = tx.PutReceipt(room.NID, &store.Receipt{UserID: userID, Type: typ, ThreadID: threadID, EventID: eventID, EventPos: rec.Pos, TS: s.now().UnixMilli()})
		return err
	})
	if err == nil {
		s.appended(pos, roomID)
	}
	return err
}

// receiptEvent returns the m.receipt ephemeral event of a room's receipts
// changed in (since, upto] that userID may see (private receipts only
// their own), or nil.
func receiptEvent(tx *store.Tx, room *store.Room, userID string, since, upto uint64) (*RawEvent, error) {
	rs, err := tx.Receipts(room.NID, since, upto)
	if err != nil {
		return nil, err
	}
	content := map[string]map[string]map[string]any{}
	for _, r := range rs {
		if r.Type == "m.read.private" && r.UserID != userID {
			continue
		}
		byType := content[r.EventID]
		if byType == nil {
			byType = map[string]map[string]any{}
			content[r.EventID] = byType
		}
		if byType[r.Type] == nil {
			byType[r.Type] = map[string]any{}
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		byType[r.Type][r.UserID] = entry
	}
	if len(content) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	return &RawEvent{Type: "m.receipt", Content: b}, nil
}

// UnreadCounter counts a user's unread notifications in a room. The push
// rules will replace the default; sync only asks this interface.
type UnreadCounter interface {
	Unread(tx *store.Tx, room *store.Room, userID string, upto uint64) (notifications, highlights int, err error)
}

// messageCounter is the default UnreadCounter, until push rules exist:
// messages from others after the user's read receipt (or their own last
// message, whichever is later), and, of those, the ones that mention them
// (m.mentions) as highlights. It looks at most unreadScanLimit events back.
type messageCounter struct{}

const unreadScanLimit = 1000

var notifyingTypes = map[string]bool{"m.room.message": true, "m.room.encrypted": true, "m.sticker": true, "m.call.invite": true, "m.poll.start": true}

// Unread implements UnreadCounter.
func (messageCounter) Unread(tx *store.Tx, room *store.Room, userID string, upto uint64) (int, int, error) {
	var read uint64
	for _, typ := range []string{"m.read", "m.read.private"} {
		for _, thread := range []string{"", "main"} {
			if r, err := tx.UserReceipt(room.NID, userID, typ, thread); err == nil {
				read = max(read, r.EventPos)
			}
		}
	}
	recs, _, err := tx.RoomStream(room.NID, read, upto, unreadScanLimit)
	if err != nil {
		return 0, 0, err
	}
	notes, highlights := 0, 0
	for i := len(recs) - 1; i >= 0; i-- {
		var ev struct {
			Type    string `json:"type"`
			Sender  string `json:"sender"`
			Content struct {
				Mentions struct {
					UserIDs []string `json:"user_ids"`
					Room    bool     `json:"room"`
				} `json:"m.mentions"`
			} `json:"content"`
		}
		if json.Unmarshal(recs[i].JSON, &ev) != nil {
			continue
		}
		if ev.Sender == userID {
			break // they wrote after this: they have read it
		}
		if !notifyingTypes[ev.Type] {
			continue
		}
		notes++
		if ev.Content.Mentions.Room || contains(ev.Content.Mentions.UserIDs, userID) {
			highlights++
		}
	}
	return notes, highlights, nil
}
