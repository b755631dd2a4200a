// Package backup serves the spec's "Server-side key backups": a user's
// backup versions and the encrypted megolm session keys stored in them.
// The server never decrypts a key; it keeps, per session, the better of
// two uploads by the metadata the client sends beside the ciphertext.
package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// API serves the key backup endpoints. Every backup belongs to the
// authenticated user; no route reaches another user's.
type API struct {
	store *store.Store
}

// New returns the key backup API over st.
func New(st *store.Store) *API { return &API{store: st} }

// Routes is the route table of the spec's "Server-side key backups".
func (a *API) Routes() []httpx.Route {
	return []httpx.Route{
		{Method: "POST", Path: "/v3/room_keys/version", Auth: httpx.UserAuth, Handler: httpx.JSON(a.createVersion)},
		{Method: "GET", Path: "/v3/room_keys/version", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.currentVersion)},
		{Method: "GET", Path: "/v3/room_keys/version/{version}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getVersion)},
		{Method: "PUT", Path: "/v3/room_keys/version/{version}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.updateVersion)},
		{Method: "DELETE", Path: "/v3/room_keys/version/{version}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.deleteVersion)},

		{Method: "GET", Path: "/v3/room_keys/keys", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getAllKeys)},
		{Method: "PUT", Path: "/v3/room_keys/keys", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putAllKeys)},
		{Method: "DELETE", Path: "/v3/room_keys/keys", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.deleteAllKeys)},
		{Method: "GET", Path: "/v3/room_keys/keys/{roomId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getRoomKeys)},
		{Method: "PUT", Path: "/v3/room_keys/keys/{roomId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putRoomKeys)},
		{Method: "DELETE", Path: "/v3/room_keys/keys/{roomId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.deleteRoomKeys)},
		{Method: "GET", Path: "/v3/room_keys/keys/{roomId}/{sessionId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getSessionKey)},
		{Method: "PUT", Path: "/v3/room_keys/keys/{roomId}/{sessionId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putSessionKey)},
		{Method: "DELETE", Path: "/v3/room_keys/keys/{roomId}/{sessionId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.deleteSessionKey)},
	}
}

// errUnknownVersion is the spec's answer for a version that does not
// exist (or was deleted).
var errUnknownVersion = mxerr.NotFound("Unknown backup version")

// wrongVersion is 403 M_WRONG_ROOM_KEYS_VERSION: keys go only to the
// current version, which the client is told so it can catch up.
func wrongVersion(current uint64) error {
	e := &mxerr.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION", Message: "Wrong backup version"}
	return e.With("current_version", strconv.FormatUint(current, 10))
}

// parseVersion reads a version as this server spells them (1, 2, ...);
// anything else names no version.
func parseVersion(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil && v > 0 && strconv.FormatUint(v, 10) == s
}

// queryVersion is the ?version= every keys endpoint requires. A version
// this server never spells is 0, which no backup has: the store says
// not found.
func queryVersion(r *httpx.Request) (uint64, error) {
	s := r.Query("version")
	if s == "" {
		return 0, mxerr.MissingParam("Missing version")
	}
	v, _ := parseVersion(s)
	return v, nil
}

// notFound turns the store's "not found" into the spec's 404.
func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errUnknownVersion
	}
	return err
}

// maxIDLength bounds room and session IDs, as the spec bounds identifiers.
const maxIDLength = 255

func checkRoomID(id string) error {
	if len(id) < 2 || id[0] != '!' || len(id) > maxIDLength || strings.IndexByte(id, 0) >= 0 {
		return mxerr.InvalidParam("Invalid room ID %q", truncate(id))
	}
	return nil
}

// checkIDs checks the room and session of a path naming one key.
func checkIDs(roomID, sessionID string) error {
	if err := checkRoomID(roomID); err != nil {
		return err
	}
	return checkSessionID(sessionID)
}

func checkSessionID(id string) error {
	if id == "" || len(id) > maxIDLength || strings.IndexByte(id, 0) >= 0 {
		return mxerr.InvalidParam("Invalid session ID %q", truncate(id))
	}
	return nil
}

// truncate keeps error messages short when an ID is far too long.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// object returns raw compacted when it is a JSON object, or false.
func object(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, false
	}
	return b.Bytes(), true
}
