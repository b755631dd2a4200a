package backup_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"hearth/server/servertest"
)

const (
	algo     = "m.megolm_backup.v1.curve25519-aes-sha2"
	versions = "/_matrix/client/v3/room_keys/version"
	keysPath = "/_matrix/client/v3/room_keys/keys"
	roomA    = "!a:localhost"
	roomB    = "!b:localhost"
)

// key is an uploaded KeyBackupData; tag goes into the (opaque) session
// data so a test can tell which upload the server kept.
func key(firstIndex, forwarded int, verified bool, tag string) map[string]any {
	return map[string]any{
		"first_message_index": firstIndex, "forwarded_count": forwarded, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": "e", "ciphertext": tag, "mac": "m"},
	}
}

func roomPath(roomID string) string { return keysPath + "/" + url.PathEscape(roomID) }

func sessionPath(roomID, sessionID string) string {
	return roomPath(roomID) + "/" + url.PathEscape(sessionID)
}

func q(path, version string) string { return path + "?version=" + url.QueryEscape(version) }

func newVersion(t *testing.T, c *servertest.Client, pub string) string {
	t.Helper()
	v := c.Must(200, "POST", versions, map[string]any{"algorithm": algo, "auth_data": map[string]any{"public_key": pub}}).Str("version")
	if v == "" {
		t.Fatal("no version in create response")
	}
	return v
}

// tagOf returns the ciphertext of a returned key: which upload it was.
func tagOf(t *testing.T, k any) string {
	t.Helper()
	m, _ := k.(map[string]any)
	sd, _ := m["session_data"].(map[string]any)
	s, _ := sd["ciphertext"].(string)
	return s
}

// Spec: a backup's life: create, read, update auth_data, replace by a
// newer version, delete; versions are never reused and survive restarts.
func TestVersionLifecycle(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")

	if r := alice.Must(404, "GET", versions, nil); r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("no backup yet: %s", r)
	}
	v1 := newVersion(t, alice, "pub1")
	cur := alice.Must(200, "GET", versions, nil)
	if cur.Str("version") != v1 || cur.Str("algorithm") != algo || cur.JSON["count"] != float64(0) || cur.Str("etag") == "" ||
		cur.JSON["auth_data"].(map[string]any)["public_key"] != "pub1" {
		t.Fatalf("current version: %s", cur)
	}
	if r := alice.Must(200, "GET", versions+"/"+v1, nil); r.Str("version") != v1 {
		t.Fatalf("version by number: %s", r)
	}

	// Only auth_data may change, and only for the same algorithm.
	alice.Must(200, "PUT", versions+"/"+v1, map[string]any{"algorithm": algo, "auth_data": map[string]any{"public_key": "pub1", "signatures": map[string]any{}}, "version": v1})
	if r := alice.Must(200, "GET", versions, nil); r.JSON["auth_data"].(map[string]any)["signatures"] == nil {
		t.Fatalf("auth_data not updated: %s", r)
	}
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		errcode    string
	}{
		{"other algorithm", versions + "/" + v1, map[string]any{"algorithm": "org.example.other", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM"},
		{"body version differs", versions + "/" + v1, map[string]any{"algorithm": algo, "auth_data": map[string]any{}, "version": "7"}, 400, "M_INVALID_PARAM"},
		{"unknown version", versions + "/7", map[string]any{"algorithm": algo, "auth_data": map[string]any{}}, 404, "M_NOT_FOUND"},
		{"not a version", versions + "/abc", map[string]any{"algorithm": algo, "auth_data": map[string]any{}}, 404, "M_NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := alice.Do("PUT", tc.path, tc.body); r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}
	if r := alice.Must(200, "GET", versions, nil); r.JSON["auth_data"].(map[string]any)["public_key"] != "pub1" {
		t.Fatalf("refused updates changed the backup: %s", r)
	}

	alice.Must(200, "PUT", q(sessionPath(roomA, "s1"), v1), key(0, 0, true, "old"))
	v2 := newVersion(t, alice, "pub2")
	if v2 == v1 {
		t.Fatalf("second version reused %s", v1)
	}
	if r := alice.Must(200, "GET", versions, nil); r.Str("version") != v2 || r.JSON["count"] != float64(0) {
		t.Fatalf("new version is not current, or not empty: %s", r)
	}
	// Keys go only to the current version; the old one can still be read.
	r := alice.Do("PUT", q(sessionPath(roomA, "s2"), v1), key(0, 0, true, "late"))
	if r.Status != 403 || r.Errcode() != "M_WRONG_ROOM_KEYS_VERSION" || r.Str("current_version") != v2 {
		t.Fatalf("upload to old version: %s", r)
	}
	if r := alice.Must(200, "GET", q(keysPath, v1), nil); len(r.JSON["rooms"].(map[string]any)) != 1 {
		t.Fatalf("old version's keys: %s", r)
	}

	alice.Must(200, "PUT", q(sessionPath(roomA, "s1"), v2), key(0, 0, true, "new"))
	s.Restart(t)
	alice.URL = s.URL
	if r := alice.Must(200, "GET", versions, nil); r.Str("version") != v2 || r.JSON["count"] != float64(1) {
		t.Fatalf("after restart: %s", r)
	}

	// Deleting a version deletes its keys; deleting it again succeeds;
	// the older live version is current again, as in Synapse.
	alice.Must(200, "DELETE", versions+"/"+v2, nil)
	alice.Must(200, "DELETE", versions+"/"+v2, nil)
	if r := alice.Do("GET", versions+"/"+v2, nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("deleted version: %s", r)
	}
	if r := alice.Do("GET", q(keysPath, v2), nil); r.Status != 404 {
		t.Fatalf("keys of deleted version: %s", r)
	}
	if r := alice.Do("PUT", q(sessionPath(roomA, "s1"), v2), key(0, 0, true, "x")); r.Status != 404 {
		t.Fatalf("upload to deleted version: %s", r)
	}
	if r := alice.Must(200, "GET", "/_matrix/client/r0/room_keys/version", nil); r.Str("version") != v1 {
		t.Fatalf("after deleting the newest, current (under r0): %s", r)
	}
	if r := alice.Do("DELETE", versions+"/99", nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("delete of a version that never existed: %s", r)
	}
	alice.Must(200, "DELETE", versions+"/"+v1, nil)
	if r := alice.Do("GET", versions, nil); r.Status != 404 {
		t.Fatalf("all deleted: %s", r)
	}
	if v3 := newVersion(t, alice, "pub3"); v3 == v1 || v3 == v2 {
		t.Fatalf("deleted version number %s handed out again", v3)
	}
}

// Spec: keys upload, download and delete per session, per room and for
// the whole backup, each answering with the backup's etag and count.
func TestKeysAtEachGranularity(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	v := newVersion(t, alice, "pub")

	if r := alice.Must(200, "PUT", q(sessionPath(roomA, "s1"), v), key(0, 0, false, "a1")); r.JSON["count"] != float64(1) {
		t.Fatalf("one key: %s", r)
	}
	r := alice.Must(200, "PUT", q(roomPath(roomA), v), map[string]any{"sessions": map[string]any{"s2": key(0, 0, false, "a2"), "s3": key(0, 0, false, "a3")}})
	if r.JSON["count"] != float64(3) {
		t.Fatalf("a room's keys: %s", r)
	}
	r = alice.Must(200, "PUT", q(keysPath, v), map[string]any{"rooms": map[string]any{
		roomB:   map[string]any{"sessions": map[string]any{"s1": key(0, 0, false, "b1")}},
		"!c:hs": map[string]any{"sessions": map[string]any{"s/with/slashes": key(0, 0, false, "c1")}},
	}})
	if r.JSON["count"] != float64(5) {
		t.Fatalf("several rooms' keys: %s", r)
	}

	all := alice.Must(200, "GET", q(keysPath, v), nil).JSON["rooms"].(map[string]any)
	if len(all) != 3 || len(all[roomA].(map[string]any)["sessions"].(map[string]any)) != 3 {
		t.Fatalf("all keys: %v", all)
	}
	if tag := tagOf(t, all["!c:hs"].(map[string]any)["sessions"].(map[string]any)["s/with/slashes"]); tag != "c1" {
		t.Fatalf("key with slashes in its session ID: %q", tag)
	}
	room := alice.Must(200, "GET", q(roomPath(roomB), v), nil).JSON["sessions"].(map[string]any)
	if len(room) != 1 || tagOf(t, room["s1"]) != "b1" {
		t.Fatalf("room B's keys: %v", room)
	}
	one := alice.Must(200, "GET", q(sessionPath(roomA, "s2"), v), nil)
	if tagOf(t, one.JSON) != "a2" || one.JSON["first_message_index"] != float64(0) || one.JSON["is_verified"] != false {
		t.Fatalf("one key: %s", one)
	}
	if r := alice.Do("GET", q(sessionPath(roomB, "s9"), v), nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("key never backed up: %s", r)
	}
	if r := alice.Must(200, "GET", q(roomPath("!empty:localhost"), v), nil); string(r.Body) != `{"sessions":{}}` {
		t.Fatalf("room without keys: %s", r)
	}

	if r := alice.Must(200, "DELETE", q(sessionPath(roomA, "s1"), v), nil); r.JSON["count"] != float64(4) {
		t.Fatalf("delete one key: %s", r)
	}
	if r := alice.Must(200, "DELETE", q(roomPath(roomA), v), nil); r.JSON["count"] != float64(2) {
		t.Fatalf("delete a room's keys: %s", r)
	}
	if r := alice.Must(200, "GET", q(roomPath(roomA), v), nil); string(r.Body) != `{"sessions":{}}` {
		t.Fatalf("deleted room still has keys: %s", r)
	}
	if r := alice.Must(200, "DELETE", q(keysPath, v), nil); r.JSON["count"] != float64(0) {
		t.Fatalf("delete all keys: %s", r)
	}
	if r := alice.Must(200, "GET", q(keysPath, v), nil); string(r.Body) != `{"rooms":{}}` {
		t.Fatalf("emptied backup: %s", r)
	}
	if r := alice.Must(200, "GET", versions, nil); r.Str("version") != v || r.JSON["count"] != float64(0) {
		t.Fatalf("deleting keys must keep the version: %s", r)
	}
}

// Spec: of two keys for one session the server keeps the verified one,
// then the one with the lower first_message_index, then the one
// forwarded fewer times; a tie keeps the stored key. The etag moves only
// when the kept key changes.
func TestKeepBetterKey(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	v := newVersion(t, alice, "pub")

	type k struct {
		verified          bool
		firstIndex, fwded int
	}
	for _, tc := range []struct {
		name     string
		stored   k
		uploaded k
		replaced bool
	}{
		{"verified beats unverified despite a later index", k{false, 5, 1}, k{true, 10, 3}, true},
		{"unverified loses to verified despite an earlier index", k{true, 5, 1}, k{false, 0, 0}, false},
		{"lower first_message_index wins", k{false, 5, 1}, k{false, 4, 9}, true},
		{"higher first_message_index loses despite fewer forwards", k{false, 5, 1}, k{false, 6, 0}, false},
		{"same index: fewer forwards win", k{true, 5, 1}, k{true, 5, 0}, true},
		{"same index: more forwards lose", k{false, 5, 1}, k{false, 5, 2}, false},
		{"a tie keeps the stored key", k{false, 5, 1}, k{false, 5, 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session := servertest.UniqueName("session")
			path := q(sessionPath(roomA, session), v)
			before := alice.Must(200, "PUT", path, key(tc.stored.firstIndex, tc.stored.fwded, tc.stored.verified, "stored"))
			after := alice.Must(200, "PUT", path, key(tc.uploaded.firstIndex, tc.uploaded.fwded, tc.uploaded.verified, "uploaded"))
			want := "stored"
			if tc.replaced {
				want = "uploaded"
			}
			if got := tagOf(t, alice.Must(200, "GET", path, nil).JSON); got != want {
				t.Fatalf("kept %s key, want %s", got, want)
			}
			if etagMoved := before.Str("etag") != after.Str("etag"); etagMoved != tc.replaced {
				t.Fatalf("etag %s → %s, replaced %v", before.Str("etag"), after.Str("etag"), tc.replaced)
			}
			if before.JSON["count"] != after.JSON["count"] {
				t.Fatalf("count changed on a second key for one session: %s → %s", before, after)
			}
		})
	}

	// The rule applies within a bulk upload too.
	session := servertest.UniqueName("session")
	alice.Must(200, "PUT", q(sessionPath(roomB, session), v), key(3, 0, false, "stored"))
	alice.Must(200, "PUT", q(keysPath, v), map[string]any{"rooms": map[string]any{roomB: map[string]any{"sessions": map[string]any{
		session: key(1, 0, false, "better"), "fresh": key(9, 9, false, "fresh"),
	}}}})
	room := alice.Must(200, "GET", q(roomPath(roomB), v), nil).JSON["sessions"].(map[string]any)
	if tagOf(t, room[session]) != "better" || tagOf(t, room["fresh"]) != "fresh" {
		t.Fatalf("bulk upload: %v", room)
	}
}

// Spec: the etag changes whenever the backup's keys change, and every
// answer agrees with GET /room_keys/version on etag and count.
func TestEtagAndCount(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	phone := s.Register(t, "alice", "pw")
	laptop := s.Login(t, "alice", "pw")
	v := newVersion(t, phone, "pub")
	info := func() (string, any) {
		r := laptop.Must(200, "GET", versions, nil)
		return r.Str("etag"), r.JSON["count"]
	}
	seen := map[string]bool{}
	etag0, _ := info()
	seen[etag0] = true

	steps := []struct {
		name, method, path string
		body               any
		changes            bool
		count              float64
	}{
		{"first key", "PUT", q(sessionPath(roomA, "s1"), v), key(2, 0, false, "x"), true, 1},
		{"same key again", "PUT", q(sessionPath(roomA, "s1"), v), key(2, 0, false, "x"), false, 1},
		{"worse key", "PUT", q(sessionPath(roomA, "s1"), v), key(3, 0, false, "y"), false, 1},
		{"better key", "PUT", q(sessionPath(roomA, "s1"), v), key(1, 0, false, "z"), true, 1},
		{"empty upload", "PUT", q(keysPath, v), map[string]any{"rooms": map[string]any{}}, false, 1},
		{"second key", "PUT", q(roomPath(roomB), v), map[string]any{"sessions": map[string]any{"s2": key(0, 0, false, "b")}}, true, 2},
		{"delete nothing", "DELETE", q(sessionPath(roomA, "nope"), v), nil, false, 2},
		{"delete one", "DELETE", q(sessionPath(roomA, "s1"), v), nil, true, 1},
		{"re-add after delete", "PUT", q(sessionPath(roomA, "s1"), v), key(1, 0, false, "z"), true, 2},
	}
	prev := etag0
	for _, st := range steps {
		r := phone.Must(200, st.method, st.path, st.body)
		etag, count := info()
		if r.Str("etag") != etag || r.JSON["count"] != count || count != st.count {
			t.Fatalf("%s: answered %s, version says etag %s count %v, want count %v", st.name, r, etag, count, st.count)
		}
		if moved := etag != prev; moved != st.changes {
			t.Fatalf("%s: etag %s → %s, want change %v", st.name, prev, etag, st.changes)
		}
		if st.changes && seen[etag] {
			t.Fatalf("%s: etag %s repeats an earlier one", st.name, etag)
		}
		seen[etag] = true
		prev = etag
	}
}

// Backups are per user: another user neither sees nor touches them, and
// has their own numbering.
func TestBackupIsPerUser(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	v := newVersion(t, alice, "alice-pub")
	alice.Must(200, "PUT", q(sessionPath(roomA, "s1"), v), key(0, 0, true, "secret"))

	for _, tc := range []struct{ method, path string }{
		{"GET", versions},
		{"GET", versions + "/" + v},
		{"PUT", versions + "/" + v},
		{"DELETE", versions + "/" + v},
		{"GET", q(keysPath, v)},
		{"GET", q(roomPath(roomA), v)},
		{"GET", q(sessionPath(roomA, "s1"), v)},
		{"PUT", q(sessionPath(roomA, "s1"), v)},
		{"DELETE", q(keysPath, v)},
		{"DELETE", q(sessionPath(roomA, "s1"), v)},
	} {
		var body any
		if tc.method == "PUT" {
			body = key(0, 0, true, "bob")
			if tc.path == versions+"/"+v {
				body = map[string]any{"algorithm": algo, "auth_data": map[string]any{"public_key": "bob"}}
			}
		}
		if r := bob.Do(tc.method, tc.path, body); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
			t.Errorf("bob %s %s: want 404 M_NOT_FOUND, got %s", tc.method, tc.path, r)
		}
	}
	bv := newVersion(t, bob, "bob-pub")
	if bv != v {
		t.Fatalf("numbering is per user: bob's first version is %s, alice's %s", bv, v)
	}
	if r := bob.Must(200, "GET", q(keysPath, bv), nil); string(r.Body) != `{"rooms":{}}` {
		t.Fatalf("bob sees keys in his new backup: %s", r)
	}
	cur := alice.Must(200, "GET", versions, nil)
	if cur.JSON["count"] != float64(1) || cur.JSON["auth_data"].(map[string]any)["public_key"] != "alice-pub" {
		t.Fatalf("alice's backup after bob's attempts: %s", cur)
	}
	if tagOf(t, alice.Must(200, "GET", q(sessionPath(roomA, "s1"), v), nil).JSON) != "secret" {
		t.Fatal("alice's key changed")
	}
}

// Bad input gets a clear Matrix error, never a 500, and stores nothing:
// a bulk upload with one bad key stores none of its keys.
func TestBadInput(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	v := newVersion(t, alice, "pub")
	alice.Must(200, "PUT", q(sessionPath(roomA, "kept"), v), key(0, 0, true, "kept"))
	before := alice.Must(200, "GET", versions, nil)
	good := key(0, 0, false, "good")
	withField := func(field string, val any) map[string]any {
		k := key(0, 0, false, "bad")
		if val == nil {
			delete(k, field)
		} else {
			k[field] = val
		}
		return k
	}
	sp := q(sessionPath(roomA, "s1"), v)

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"not JSON", "PUT", sp, "{", 400, "M_NOT_JSON"},
		{"array body", "PUT", sp, "[]", 400, "M_BAD_JSON"},
		{"index as string", "PUT", sp, withField("first_message_index", "1"), 400, "M_BAD_JSON"},
		{"fractional index", "PUT", sp, withField("first_message_index", 1.5), 400, "M_BAD_JSON"},
		{"negative forwarded_count", "PUT", sp, withField("forwarded_count", -1), 400, "M_BAD_JSON"},
		{"is_verified as string", "PUT", sp, withField("is_verified", "yes"), 400, "M_BAD_JSON"},
		{"missing is_verified", "PUT", sp, withField("is_verified", nil), 400, "M_BAD_JSON"},
		{"missing session_data", "PUT", sp, withField("session_data", nil), 400, "M_BAD_JSON"},
		{"session_data a string", "PUT", sp, withField("session_data", "cipher"), 400, "M_BAD_JSON"},
		{"missing version", "PUT", sessionPath(roomA, "s1"), good, 400, "M_MISSING_PARAM"},
		{"version not a number", "PUT", q(sessionPath(roomA, "s1"), "v1"), good, 404, "M_NOT_FOUND"},
		{"not a room ID", "PUT", q(sessionPath("general", "s1"), v), good, 400, "M_INVALID_PARAM"},
		{"empty session ID", "PUT", q(roomPath(roomA)+"/", v), good, 400, "M_INVALID_PARAM"},
		{"room without sessions", "PUT", q(roomPath(roomA), v), map[string]any{}, 400, "M_BAD_JSON"},
		{"sessions not an object", "PUT", q(roomPath(roomA), v), map[string]any{"sessions": []any{good}}, 400, "M_BAD_JSON"},
		{"null key", "PUT", q(roomPath(roomA), v), map[string]any{"sessions": map[string]any{"s1": nil}}, 400, "M_BAD_JSON"},
		{"missing rooms", "PUT", q(keysPath, v), map[string]any{}, 400, "M_MISSING_PARAM"},
		{"rooms not an object", "PUT", q(keysPath, v), map[string]any{"rooms": "all"}, 400, "M_BAD_JSON"},
		{"one bad key among good ones", "PUT", q(keysPath, v), map[string]any{"rooms": map[string]any{
			roomA: map[string]any{"sessions": map[string]any{"g1": good, "g2": good}},
			roomB: map[string]any{"sessions": map[string]any{"b1": withField("forwarded_count", "0")}},
		}}, 400, "M_BAD_JSON"},
		{"one bad room among good ones", "PUT", q(keysPath, v), map[string]any{"rooms": map[string]any{
			roomA:  map[string]any{"sessions": map[string]any{"g1": good}},
			"#foo": map[string]any{"sessions": map[string]any{"g1": good}},
		}}, 400, "M_INVALID_PARAM"},
		{"empty room ID deletes nothing", "DELETE", q(keysPath+"/", v), nil, 400, "M_INVALID_PARAM"},
		{"delete without version", "DELETE", keysPath, nil, 400, "M_MISSING_PARAM"},
		{"create without algorithm", "POST", versions, map[string]any{"auth_data": map[string]any{}}, 400, "M_MISSING_PARAM"},
		{"create without auth_data", "POST", versions, map[string]any{"algorithm": algo}, 400, "M_MISSING_PARAM"},
		{"create with auth_data a string", "POST", versions, map[string]any{"algorithm": algo, "auth_data": "pub"}, 400, "M_BAD_JSON"},
		{"create with algorithm a number", "POST", versions, map[string]any{"algorithm": 1, "auth_data": map[string]any{}}, 400, "M_BAD_JSON"},
		{"update to auth_data null", "PUT", versions + "/" + v, map[string]any{"algorithm": algo, "auth_data": nil}, 400, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any = tc.body
			if m, ok := tc.body.(map[string]any); ok {
				raw, _ := json.Marshal(m)
				body = raw
			}
			r := alice.Do(tc.method, tc.path, body)
			if r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}

	after := alice.Must(200, "GET", versions, nil)
	if after.Str("version") != v || after.Str("etag") != before.Str("etag") || after.JSON["count"] != float64(1) {
		t.Fatalf("bad input changed the backup: before %s, after %s", before, after)
	}
	if auth := after.JSON["auth_data"].(map[string]any); auth["public_key"] != "pub" {
		t.Fatalf("bad input changed auth_data: %v", auth)
	}
	if r := alice.Do("GET", q(sessionPath(roomA, "kept"), v), nil); r.Status != 200 {
		t.Fatalf("kept key: %s", r)
	}
	if r := s.Client(t).Do("GET", versions, nil); r.Status != 401 || r.Errcode() != "M_MISSING_TOKEN" {
		t.Fatalf("without a token: %s", r)
	}
}
