package backup

import (
	"encoding/json"
	"sort"
	"strconv"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// keyData is the spec's KeyBackupData as uploaded: every field is
// required, so each is a pointer that says whether it was sent.
type keyData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// key validates an uploaded key; where names it in errors.
func (k *keyData) key(where string) (store.BackupKey, error) {
	switch {
	case k == nil:
		return store.BackupKey{}, mxerr.BadJSON("%s must be an object", where)
	case k.FirstMessageIndex == nil:
		return store.BackupKey{}, mxerr.BadJSON("%s: missing first_message_index", where)
	case k.ForwardedCount == nil:
		return store.BackupKey{}, mxerr.BadJSON("%s: missing forwarded_count", where)
	case k.IsVerified == nil:
		return store.BackupKey{}, mxerr.BadJSON("%s: missing is_verified", where)
	case k.SessionData == nil:
		return store.BackupKey{}, mxerr.BadJSON("%s: missing session_data", where)
	case *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0:
		return store.BackupKey{}, mxerr.BadJSON("%s: first_message_index and forwarded_count must not be negative", where)
	}
	data, ok := object(k.SessionData)
	if !ok {
		return store.BackupKey{}, mxerr.BadJSON("%s: session_data must be an object", where)
	}
	return store.BackupKey{
		FirstMessageIndex: *k.FirstMessageIndex, ForwardedCount: *k.ForwardedCount,
		IsVerified: *k.IsVerified, SessionData: data,
	}, nil
}

// better reports whether an uploaded key should replace the stored one,
// by the spec's rule: a verified key beats an unverified one; then the
// key that decrypts from an earlier message wins; then the key forwarded
// fewer times. A tie keeps the stored key.
func better(stored, uploaded *store.BackupKey) bool {
	if uploaded.IsVerified != stored.IsVerified {
		return uploaded.IsVerified
	}
	if uploaded.FirstMessageIndex != stored.FirstMessageIndex {
		return uploaded.FirstMessageIndex < stored.FirstMessageIndex
	}
	return uploaded.ForwardedCount < stored.ForwardedCount
}

type roomKeysReq struct {
	Sessions map[string]*keyData `json:"sessions"`
}

type allKeysReq struct {
	Rooms map[string]*roomKeysReq `json:"rooms"`
}

// updateResp answers every change to a version's keys.
type updateResp struct {
	Etag  string `json:"etag"`
	Count int    `json:"count"`
}

func updated(v *store.BackupVersion) *updateResp {
	return &updateResp{Etag: strconv.FormatUint(v.Etag, 10), Count: v.Count}
}

// appendRoom validates a room's uploaded sessions and appends them to
// keys, in session order so that errors are reported deterministically.
func appendRoom(keys []store.RoomKey, roomID string, in *roomKeysReq) ([]store.RoomKey, error) {
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	if in == nil || in.Sessions == nil {
		return nil, mxerr.BadJSON("Room %s: missing sessions", truncate(roomID))
	}
	ids := make([]string, 0, len(in.Sessions))
	for id := range in.Sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := checkSessionID(id); err != nil {
			return nil, err
		}
		k, err := in.Sessions[id].key("Session " + truncate(id))
		if err != nil {
			return nil, err
		}
		keys = append(keys, store.RoomKey{RoomID: roomID, SessionID: id, Key: k})
	}
	return keys, nil
}

// putAllKeys is PUT /room_keys/keys: keys of any rooms.
func (a *API) putAllKeys(r *httpx.Request, in *allKeysReq) (*updateResp, error) {
	if in.Rooms == nil {
		return nil, mxerr.MissingParam("Missing rooms")
	}
	ids := make([]string, 0, len(in.Rooms))
	for id := range in.Rooms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var keys []store.RoomKey
	for _, id := range ids {
		var err error
		if keys, err = appendRoom(keys, id, in.Rooms[id]); err != nil {
			return nil, err
		}
	}
	return a.putKeys(r, keys)
}

// putRoomKeys is PUT /room_keys/keys/{roomId}: keys of one room.
func (a *API) putRoomKeys(r *httpx.Request, in *roomKeysReq) (*updateResp, error) {
	keys, err := appendRoom(nil, r.Param("roomId"), in)
	if err != nil {
		return nil, err
	}
	return a.putKeys(r, keys)
}

// putSessionKey is PUT /room_keys/keys/{roomId}/{sessionId}: one key.
func (a *API) putSessionKey(r *httpx.Request, in *keyData) (*updateResp, error) {
	return a.putRoomKeys(r, &roomKeysReq{Sessions: map[string]*keyData{r.Param("sessionId"): in}})
}

// putKeys stores validated keys in the version the query names, which
// must be the current one, keeping the better key per session.
func (a *API) putKeys(r *httpx.Request, keys []store.RoomKey) (*updateResp, error) {
	ver, err := queryVersion(r)
	if err != nil {
		return nil, err
	}
	lp := r.Principal.Localpart
	var v *store.BackupVersion
	err = a.store.Update(func(tx *store.Tx) error {
		cur, err := tx.CurrentBackupVersion(lp)
		if err != nil {
			return err
		}
		if cur.Version != ver {
			// An old version that still exists gets the spec's 403, so the
			// client learns the current one; a version that never existed
			// or was deleted is unknown, as for Synapse.
			if _, err := tx.BackupVersion(lp, ver); err != nil {
				return err
			}
			return wrongVersion(cur.Version)
		}
		v, err = tx.PutBackupKeys(lp, ver, keys, better)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return updated(v), nil
}

type roomKeysResp struct {
	Sessions map[string]*store.BackupKey `json:"sessions"`
}

type allKeysResp struct {
	Rooms map[string]*roomKeysResp `json:"rooms"`
}

// keysIn reads the keys of any live version (not only the current one:
// a client restoring from an older backup may still read it).
func (a *API) keysIn(r *httpx.Request, roomID, sessionID string) ([]store.RoomKey, error) {
	ver, err := queryVersion(r)
	if err != nil {
		return nil, err
	}
	var keys []store.RoomKey
	err = a.store.View(func(tx *store.Tx) (err error) {
		keys, err = tx.BackupKeys(r.Principal.Localpart, ver, roomID, sessionID)
		return err
	})
	return keys, notFound(err)
}

// getAllKeys is GET /room_keys/keys.
func (a *API) getAllKeys(r *httpx.Request) (*allKeysResp, error) {
	keys, err := a.keysIn(r, "", "")
	if err != nil {
		return nil, err
	}
	out := &allKeysResp{Rooms: map[string]*roomKeysResp{}}
	for i := range keys {
		k := &keys[i]
		room := out.Rooms[k.RoomID]
		if room == nil {
			room = &roomKeysResp{Sessions: map[string]*store.BackupKey{}}
			out.Rooms[k.RoomID] = room
		}
		room.Sessions[k.SessionID] = &k.Key
	}
	return out, nil
}

// getRoomKeys is GET /room_keys/keys/{roomId}: {"sessions": {}} when the
// room has none.
func (a *API) getRoomKeys(r *httpx.Request) (*roomKeysResp, error) {
	if err := checkRoomID(r.Param("roomId")); err != nil {
		return nil, err
	}
	keys, err := a.keysIn(r, r.Param("roomId"), "")
	if err != nil {
		return nil, err
	}
	out := &roomKeysResp{Sessions: map[string]*store.BackupKey{}}
	for i := range keys {
		out.Sessions[keys[i].SessionID] = &keys[i].Key
	}
	return out, nil
}

// getSessionKey is GET /room_keys/keys/{roomId}/{sessionId}.
func (a *API) getSessionKey(r *httpx.Request) (*store.BackupKey, error) {
	if err := checkIDs(r.Param("roomId"), r.Param("sessionId")); err != nil {
		return nil, err
	}
	keys, err := a.keysIn(r, r.Param("roomId"), r.Param("sessionId"))
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, mxerr.NotFound("Key not found")
	}
	return &keys[0].Key, nil
}

// deleteAllKeys is DELETE /room_keys/keys: every key of a version.
func (a *API) deleteAllKeys(r *httpx.Request) (*updateResp, error) {
	return a.deleteKeys(r, "", "")
}

// deleteRoomKeys is DELETE /room_keys/keys/{roomId}.
func (a *API) deleteRoomKeys(r *httpx.Request) (*updateResp, error) {
	if err := checkRoomID(r.Param("roomId")); err != nil {
		return nil, err
	}
	return a.deleteKeys(r, r.Param("roomId"), "")
}

// deleteSessionKey is DELETE /room_keys/keys/{roomId}/{sessionId}.
func (a *API) deleteSessionKey(r *httpx.Request) (*updateResp, error) {
	if err := checkIDs(r.Param("roomId"), r.Param("sessionId")); err != nil {
		return nil, err
	}
	return a.deleteKeys(r, r.Param("roomId"), r.Param("sessionId"))
}

// deleteKeys deletes the keys BackupKeys would choose from any live
// version (a client may clear an old backup too).
func (a *API) deleteKeys(r *httpx.Request, roomID, sessionID string) (*updateResp, error) {
	ver, err := queryVersion(r)
	if err != nil {
		return nil, err
	}
	var v *store.BackupVersion
	err = a.store.Update(func(tx *store.Tx) (err error) {
		v, err = tx.DeleteBackupKeys(r.Principal.Localpart, ver, roomID, sessionID)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return updated(v), nil
}
