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
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if m, err := tx.MembershipOf(userID, room.NID); err != nil || m.Membership != "join" {
			return mxerr.Forbidden("You are not joined to this room")
		}
		rec, err := servableEvent(tx, eventID)
		if errors.Is(err, store.ErrNotFound) || err == nil && rec.RoomNID != room.NID {
			return mxerr.NotFound("Event not found")
		}
		if err != nil {
			return err
		}
		if threadID != "" && threadID != "main" {
			if root, err := servableEvent(tx, threadID); err != nil || root.RoomNID != room.NID {
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

// SetRemoteReceipt records a remote user's public read receipt, which
// their server sent, up to eventID in roomID at ts, and wakes the room's
// syncs. The user must be joined; the event may be one this server has
// not received, but not one of another room.
func (s *Service) SetRemoteReceipt(userID, roomID, eventID, threadID string, ts int64) error {
	var pos uint64
	err := s.store.Update(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if m, err := tx.MembershipOf(userID, room.NID); err != nil || m.Membership != "join" {
			return mxerr.Forbidden("%s is not joined to the room", userID)
		}
		var eventPos uint64
		rec, err := tx.EventByID(eventID)
		switch {
		case err == nil && rec.RoomNID != room.NID:
			return mxerr.NotFound("Event %s is not in the room", eventID)
		case err == nil:
			eventPos = rec.Pos
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		pos, err = tx.PutReceipt(room.NID, &store.Receipt{UserID: userID, Type: "m.read", ThreadID: threadID, EventID: eventID, EventPos: eventPos, TS: ts})
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
			// The map holds one receipt per user and event: where a
			// user has both, the unthreaded one is shown (MSC4102).
			if prev, ok := byType[r.Type][r.UserID].(map[string]any); ok && prev["thread_id"] == nil {
				continue
			}
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
	// Unread counts over the whole room, threads included.
	Unread(tx *store.Tx, room *store.Room, userID string, upto uint64) (notifications, highlights int, err error)
	// UnreadByThread counts the main timeline and each thread apart, each
	// after its own receipt ("" is the main timeline).
	UnreadByThread(tx *store.Tx, room *store.Room, userID string, upto uint64) (map[string]Unread, error)
}

// messageCounter is the default UnreadCounter, until push rules exist:
// messages from others after the user's read receipt (or their own last
// message, whichever is later), and, of those, the ones that mention them
// (m.mentions) as highlights. It looks at most unreadScanLimit events back.
type messageCounter struct{}

const unreadScanLimit = 1000

var notifyingTypes = map[string]bool{"m.room.message": true, "m.room.encrypted": true, "m.sticker": true, "m.call.invite": true, "m.poll.start": true}

// unreadEvent is what counting needs of an event.
type unreadEvent struct {
	Type    string `json:"type"`
	Sender  string `json:"sender"`
	Content struct {
		Mentions struct {
			UserIDs []string `json:"user_ids"`
			Room    bool     `json:"room"`
		} `json:"m.mentions"`
		RelatesTo struct {
			RelType string `json:"rel_type"`
			EventID string `json:"event_id"`
		} `json:"m.relates_to"`
	} `json:"content"`
}

// thread returns the thread an event is in: its root's ID, or "" for the
// main timeline.
func (e *unreadEvent) thread() string {
	if e.Content.RelatesTo.RelType == "m.thread" {
		return e.Content.RelatesTo.EventID
	}
	return ""
}

// readUpTo returns the position a user has read a thread up to: their
// newest receipt for it, or an unthreaded one ("" thread is main).
func readUpTo(tx *store.Tx, room *store.Room, userID, thread string) uint64 {
	threads := []string{""}
	if thread == "" {
		threads = append(threads, "main")
	} else {
		threads = append(threads, thread)
	}
	var read uint64
	for _, typ := range []string{"m.read", "m.read.private"} {
		for _, t := range threads {
			if r, err := tx.UserReceipt(room.NID, userID, typ, t); err == nil {
				read = max(read, r.EventPos)
			}
		}
	}
	return read
}

// Unread implements UnreadCounter.
func (c messageCounter) Unread(tx *store.Tx, room *store.Room, userID string, upto uint64) (int, int, error) {
	by, err := c.UnreadByThread(tx, room, userID, upto)
	notes, highlights := 0, 0
	for _, u := range by {
		notes += u.Notifications
		highlights += u.Highlights
	}
	return notes, highlights, err
}

// UnreadByThread implements UnreadCounter. It reads the room backwards
// in pages and stops once every count it has met is settled (read up to,
// or written in), so a room the user has read costs one small page.
func (messageCounter) UnreadByThread(tx *store.Tx, room *store.Room, userID string, upto uint64) (map[string]Unread, error) {
	out := map[string]Unread{}
	reads := map[string]uint64{}
	done := map[string]bool{} // counts that are settled
	open := 0                 // threads met and not yet settled
	seen := 0
	for upto > 0 && seen < unreadScanLimit {
		recs, _, err := tx.RoomStream(room.NID, 0, upto, 64)
		if err != nil || len(recs) == 0 {
			return out, err
		}
		upto = recs[0].Pos - 1
		for i := len(recs) - 1; i >= 0; i-- {
			seen++
			var ev unreadEvent
			if json.Unmarshal(recs[i].JSON, &ev) != nil {
				continue
			}
			th := ev.thread()
			if done[th] {
				continue
			}
			read, ok := reads[th]
			if !ok {
				read = readUpTo(tx, room, userID, th)
				reads[th] = read
				if th != "" {
					open++
				}
			}
			if recs[i].Pos <= read || ev.Sender == userID {
				done[th] = true // read up to here, or they wrote after this
				if th != "" {
					open--
				}
				continue
			}
			if !notifyingTypes[ev.Type] {
				continue
			}
			u := out[th]
			u.Notifications++
			if ev.Content.Mentions.Room || contains(ev.Content.Mentions.UserIDs, userID) {
				u.Highlights++
			}
			out[th] = u
		}
		if done[""] && open == 0 {
			break
		}
	}
	return out, nil
}
