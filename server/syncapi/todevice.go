package syncapi

import (
	"encoding/json"
	"errors"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

type sendToDeviceReq struct {
	Messages map[string]map[string]json.RawMessage `json:"messages"`
}

// sendToDevice is PUT /sendToDevice/{eventType}/{txnId}: messages for
// devices of local users ("*" for all of a user's devices), queued until
// each device's sync acknowledges them, and for users of other servers,
// queued for their servers as m.direct_to_device EDUs. A retried
// transaction is not sent twice.
func (a *API) sendToDevice(r *httpx.Request, in *sendToDeviceReq) (*httpx.Empty, error) {
	if in.Messages == nil {
		return nil, mxerr.MissingParam("Missing messages")
	}
	for _, byDevice := range in.Messages {
		for _, content := range byDevice {
			if len(content) == 0 || content[0] != '{' {
				return nil, mxerr.BadJSON("Each message must be a JSON object")
			}
		}
	}
	typ := r.Param("eventType")
	txn := &store.TxnKey{Localpart: r.Principal.Localpart, DeviceID: r.Principal.DeviceID, TxnID: "sendToDevice\x00" + typ + "\x00" + r.Param("txnId")}
	done := false
	_ = a.store.View(func(tx *store.Tx) error { _, err := tx.TxnEvent(txn, 0); done = err == nil; return nil })
	if done {
		return &httpx.Empty{}, nil
	}
	// Remote messages are queued first: should the local part fail, the
	// client's retry queues them again under the same message IDs, which
	// the receiving servers recognise.
	if err := a.federateToDevice(r, typ, in.Messages); err != nil {
		return nil, err
	}
	var pos uint64
	var targets []string
	err := a.store.Update(func(tx *store.Tx) error {
		pos, targets = 0, nil
		if _, err := tx.TxnEvent(txn, 0); err == nil {
			return nil // already sent
		}
		for userID, byDevice := range in.Messages {
			localpart, ok := a.localpart(userID)
			if !ok {
				continue
			}
			devices, err := tx.Devices(localpart)
			if err != nil {
				return err
			}
			for deviceID, content := range byDevice {
				for _, d := range devices {
					if deviceID != "*" && d.ID != deviceID {
						continue
					}
					if pos, err = tx.QueueToDevice(localpart, d.ID, &store.ToDevice{Sender: r.Principal.UserID, Type: typ, Content: content}); err != nil {
						return err
					}
				}
			}
			targets = append(targets, userID)
		}
		return tx.MarkTxn(txn, 0, pos)
	})
	if err != nil {
		return nil, err
	}
	if pos != 0 {
		a.notifier.Notify(pos, targets)
	}
	return &httpx.Empty{}, nil
}

// federateToDevice queues the messages for users of other servers, one
// m.direct_to_device EDU per server.
func (a *API) federateToDevice(r *httpx.Request, typ string, messages map[string]map[string]json.RawMessage) error {
	byServer := map[string]map[string]map[string]json.RawMessage{}
	for userID, byDevice := range messages {
		server := serverOf(userID)
		if server == "" || server == a.rooms.ServerName() {
			continue
		}
		if byServer[server] == nil {
			byServer[server] = map[string]map[string]json.RawMessage{}
		}
		byServer[server][userID] = byDevice
	}
	if len(byServer) == 0 {
		return nil
	}
	if a.SendEDU == nil {
		return mxerr.Forbidden("Federation is not enabled: messages cannot reach other servers' users")
	}
	for server, msgs := range byServer {
		err := a.SendEDU([]string{server}, "m.direct_to_device", map[string]any{
			"sender": r.Principal.UserID, "type": typ, "messages": msgs,
			"message_id": toDeviceMessageID(r.Principal.UserID, r.Principal.DeviceID, typ+"\x00"+r.Param("txnId"), server),
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// localpart returns the localpart of a local user ID.
func (a *API) localpart(userID string) (string, bool) {
	lp, server, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp, ok && strings.HasPrefix(userID, "@") && server == a.rooms.ServerName()
}

type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

type toDeviceList struct {
	Events []toDeviceEvent `json:"events"`
}

// ackToDevice deletes the device's messages the client has acknowledged
// by syncing with since, writing only when there are some.
func (a *API) ackToDevice(p *httpx.Principal, since uint64) error {
	var pending bool
	_ = a.store.View(func(tx *store.Tx) error { pending = tx.HasToDevice(p.Localpart, p.DeviceID, since); return nil })
	if !pending {
		return nil
	}
	return a.store.Update(func(tx *store.Tx) error {
		_, err := tx.AckToDevice(p.Localpart, p.DeviceID, since)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

// pendingToDevice returns the device's messages in (since, upto].
func (a *API) pendingToDevice(p *httpx.Principal, since, upto uint64) (*toDeviceList, error) {
	var msgs []store.ToDevice
	err := a.store.View(func(tx *store.Tx) (err error) {
		msgs, err = tx.PendingToDevice(p.Localpart, p.DeviceID, since, upto)
		return err
	})
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	out := &toDeviceList{}
	for _, m := range msgs {
		out.Events = append(out.Events, toDeviceEvent(m))
	}
	return out, nil
}
