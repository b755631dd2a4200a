package syncapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"hearth/store"
)

// Ephemeral data across servers: local users' typing, receipts, presence
// and to-device messages go out as EDUs (through SendEDU, which the
// server wires to the federation sender), and what remote servers send
// of theirs is delivered here.

// remoteTypingTimeout is how long a remote user's typing lasts unless
// renewed or stopped: Synapse's federation typing timeout.
const remoteTypingTimeout = 60 * time.Second

// SendEDU queues an EDU of a type for other servers; the API calls it
// only when set (federation on).
type SendEDU func(destinations []string, eduType string, content any) error

// serverOf returns the server name of a user ID, or "".
func serverOf(userID string) string {
	_, server, ok := strings.Cut(userID, ":")
	if !ok || !strings.HasPrefix(userID, "@") {
		return ""
	}
	return server
}

func (a *API) isLocal(userID string) bool { return serverOf(userID) == a.rooms.ServerName() }

// roomServers returns the other servers with users joined to a room.
func (a *API) roomServers(roomID string) []string {
	servers, err := a.rooms.RemoteServers(roomID)
	if err != nil {
		return nil
	}
	return servers
}

// sharingServers returns the other servers with users sharing a room
// with userID.
func (a *API) sharingServers(userID string) []string {
	peers, err := a.rooms.SharedUsers(userID)
	if err != nil {
		return nil
	}
	var out []string
	for _, u := range peers {
		if s := serverOf(u); s != "" && s != a.rooms.ServerName() && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// sendEDU queues an EDU for destinations, if federation is on and there
// are any. Ephemeral EDUs lost to an error are not worth failing the
// client's request over: the sender logs it.
func (a *API) sendEDU(destinations []string, eduType string, content any) {
	if a.SendEDU != nil && len(destinations) > 0 {
		_ = a.SendEDU(destinations, eduType, content)
	}
}

// federateTyping tells the other servers in a room that a local user
// started or stopped typing.
func (a *API) federateTyping(roomID, userID string, typing bool) {
	if a.SendEDU == nil || !a.isLocal(userID) {
		return
	}
	a.sendEDU(a.roomServers(roomID), "m.typing", map[string]any{"room_id": roomID, "user_id": userID, "typing": typing})
}

// federateReceipt tells the other servers in a room of a local user's
// public read receipt.
func (a *API) federateReceipt(roomID, userID, eventID, threadID string) {
	if a.SendEDU == nil {
		return
	}
	data := map[string]any{"ts": time.Now().UnixMilli()}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	a.sendEDU(a.roomServers(roomID), "m.receipt", map[string]any{
		roomID: map[string]any{"m.read": map[string]any{userID: map[string]any{"event_ids": []string{eventID}, "data": data}}},
	})
}

// federatePresence tells the servers sharing a room with a local user of
// their presence.
func (a *API) federatePresence(userID string) {
	if a.SendEDU == nil || !a.isLocal(userID) {
		return
	}
	c := a.presence.Get(userID)
	entry := map[string]any{"user_id": userID, "presence": c.Presence, "last_active_ago": c.LastActiveAgo, "currently_active": c.CurrentlyActive}
	if c.StatusMsg != "" {
		entry["status_msg"] = c.StatusMsg
	}
	a.sendEDU(a.sharingServers(userID), "m.presence", map[string]any{"push": []any{entry}})
}

// toDeviceMessageID names a to-device message sent to a server the same
// way every time the client's transaction is tried, so that a retry the
// receiver already has is recognised there.
func toDeviceMessageID(userID, deviceID, txnID, server string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + deviceID + "\x00" + txnID + "\x00" + server))
	return hex.EncodeToString(h[:12])
}

// SetRemoteTyping records a remote user typing in a room, or stopping,
// as their server said.
func (a *API) SetRemoteTyping(roomID, userID string, typing bool) {
	a.typing.Set(roomID, userID, typing, remoteTypingTimeout)
}

// SetRemotePresence records a remote user's presence as their server
// said: state, status message (nil keeps it), how long ago they were
// active, and whether they are active now.
func (a *API) SetRemotePresence(userID, state string, msg *string, lastActiveAgo int64, currentlyActive bool) {
	a.presence.SetRemote(userID, state, msg, lastActiveAgo, currentlyActive)
}

// DeliverRemoteToDevice queues a remote sender's to-device message for
// the local devices it names ("*" for all of a user's devices), unless
// origin already delivered this message ID, and wakes their syncs.
// Entries for users of other servers, and contents that are not JSON
// objects, are skipped.
func (a *API) DeliverRemoteToDevice(origin, sender, typ, messageID string, messages map[string]map[string]json.RawMessage) error {
	var pos uint64
	var targets []string
	err := a.store.Update(func(tx *store.Tx) error {
		pos, targets = 0, nil
		fresh, err := tx.MarkInboundToDevice(origin, sender, messageID, time.Now().UnixMilli())
		if err != nil || !fresh {
			return err
		}
		for userID, byDevice := range messages {
			localpart, ok := a.localpart(userID)
			if !ok {
				continue
			}
			devices, err := tx.Devices(localpart)
			if err != nil {
				return err
			}
			for deviceID, content := range byDevice {
				if len(content) == 0 || content[0] != '{' {
					continue
				}
				for _, d := range devices {
					if deviceID != "*" && d.ID != deviceID {
						continue
					}
					if pos, err = tx.QueueToDevice(localpart, d.ID, &store.ToDevice{Sender: sender, Type: typ, Content: content}); err != nil {
						return err
					}
				}
			}
			targets = append(targets, userID)
		}
		return nil
	})
	if err == nil && pos != 0 {
		a.notifier.Notify(pos, targets)
	}
	return err
}
