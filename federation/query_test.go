package federation_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"hearth/federation"
	"hearth/server/servertest"
)

// fedCall sends a request signed by from to to and returns the status
// (200 for success) and the errcode of a failure.
func fedCall(t *testing.T, from, to *servertest.Server, method, uri string, in, out any) (int, string) {
	t.Helper()
	err := from.Federation().Client().Call(context.Background(), method, to.ServerName(), uri, in, out)
	if err == nil {
		return 200, ""
	}
	fe, ok := err.(*federation.Error)
	if !ok {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return fe.Status, fe.Code
}

func createRoom(t *testing.T, c *servertest.Client, body map[string]any) string {
	t.Helper()
	return c.Must(200, "POST", "/_matrix/client/v3/createRoom", body).Str("room_id")
}

// TestRemoteProfileAliasAndDirectory: a client of A reads what lives on
// B (a profile, a room alias, the room directory) as if it were local.
func TestRemoteProfileAliasAndDirectory(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	bob := b.Register(t, "bob", "password-bob")
	bob.Must(200, "PUT", "/_matrix/client/v3/profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob"})
	lounge := createRoom(t, bob, map[string]any{"room_alias_name": "lounge", "visibility": "public", "preset": "public_chat", "name": "Lounge"})
	createRoom(t, bob, map[string]any{"room_alias_name": "den", "visibility": "private", "preset": "private_chat", "name": "Den"})
	alice := a.Register(t, "alice", "password-alice")
	bName := b.ServerName()

	t.Run("profile", func(t *testing.T) {
		p := "/_matrix/client/v3/profile/" + url.PathEscape(bob.UserID)
		if r := alice.Must(200, "GET", p, nil); r.Str("displayname") != "Bob" || r.JSON["avatar_url"] != nil {
			t.Fatalf("remote profile: %s", r)
		}
		if r := alice.Must(200, "GET", p+"/displayname", nil); r.Str("displayname") != "Bob" {
			t.Fatalf("remote displayname: %s", r)
		}
		wantMatrixErr(t, "unset remote avatar", alice.Do("GET", p+"/avatar_url", nil), 404, "M_NOT_FOUND")
		wantMatrixErr(t, "unknown remote user", alice.Do("GET", "/_matrix/client/v3/profile/"+url.PathEscape("@nobody:"+bName), nil), 404, "M_NOT_FOUND")
		// Without an access token too, as the spec allows profile reads.
		if r := a.Client(t).Must(200, "GET", p, nil); r.Str("displayname") != "Bob" {
			t.Fatalf("anonymous remote profile: %s", r)
		}
	})

	t.Run("alias", func(t *testing.T) {
		r := alice.Must(200, "GET", "/_matrix/client/v3/directory/room/"+url.PathEscape("#lounge:"+bName), nil)
		servers, _ := r.JSON["servers"].([]any)
		if r.Str("room_id") != lounge || len(servers) == 0 || servers[0] != bName {
			t.Fatalf("remote alias: %s", r)
		}
		wantMatrixErr(t, "unknown remote alias", alice.Do("GET", "/_matrix/client/v3/directory/room/"+url.PathEscape("#nowhere:"+bName), nil), 404, "M_NOT_FOUND")
	})

	t.Run("public rooms", func(t *testing.T) {
		r := alice.Must(200, "GET", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(bName), nil)
		if ids := chunkIDs(r); len(ids) != 1 || ids[0] != lounge {
			t.Fatalf("remote directory: %s", r)
		}
		r = alice.Must(200, "POST", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(bName),
			map[string]any{"filter": map[string]any{"generic_search_term": "lounge"}})
		if ids := chunkIDs(r); len(ids) != 1 || ids[0] != lounge {
			t.Fatalf("remote directory, searched: %s", r)
		}
		r = alice.Must(200, "POST", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(bName),
			map[string]any{"filter": map[string]any{"generic_search_term": "attic"}})
		if ids := chunkIDs(r); len(ids) != 0 {
			t.Fatalf("remote directory, searched for nothing: %s", r)
		}
	})
}

func chunkIDs(r *servertest.Response) []string {
	var ids []string
	chunk, _ := r.JSON["chunk"].([]any)
	for _, c := range chunk {
		m, _ := c.(map[string]any)
		id, _ := m["room_id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func wantMatrixErr(t *testing.T, what string, r *servertest.Response, status int, errcode string) {
	t.Helper()
	if r.Status != status || r.Errcode() != errcode {
		t.Fatalf("%s: want %d %s, got %s", what, status, errcode, r)
	}
}

// TestInboundQueries: what B answers A's signed requests about its
// aliases, directory, spaces and timelines, and that it answers nothing
// unsigned.
func TestInboundQueries(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	bob := b.Register(t, "bob", "password-bob")
	bName := b.ServerName()
	lounge := createRoom(t, bob, map[string]any{"room_alias_name": "lounge", "visibility": "public", "preset": "public_chat", "name": "Lounge"})
	den := createRoom(t, bob, map[string]any{"room_alias_name": "den", "preset": "private_chat", "name": "Den"})
	space := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Space",
		"creation_content": map[string]any{"type": "m.space"}})
	for _, child := range []string{lounge, den} {
		bob.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(space)+"/state/m.space.child/"+url.PathEscape(child),
			map[string]any{"via": []string{bName}})
	}
	bob.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(lounge)+"/state/m.room.history_visibility/",
		map[string]any{"history_visibility": "world_readable"})
	sent := bob.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(lounge)+"/send/m.room.message/t1",
		map[string]any{"msgtype": "m.text", "body": "hello"}).Str("event_id")

	t.Run("directory", func(t *testing.T) {
		var out struct {
			RoomID  string   `json:"room_id"`
			Servers []string `json:"servers"`
		}
		if st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/query/directory?room_alias="+url.QueryEscape("#den:"+bName), nil, &out); st != 200 || out.RoomID != den || len(out.Servers) != 1 || out.Servers[0] != bName {
			t.Fatalf("query/directory: %d %s %+v", st, code, out)
		}
		for _, tc := range []struct {
			alias  string
			status int
			code   string
		}{
			{"#nowhere:" + bName, 404, "M_NOT_FOUND"},
			{"#den:" + a.ServerName(), 404, "M_NOT_FOUND"}, // not B's to answer
			{"den", 400, "M_INVALID_PARAM"},
		} {
			if st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/query/directory?room_alias="+url.QueryEscape(tc.alias), nil, nil); st != tc.status || code != tc.code {
				t.Errorf("query/directory %q: got %d %s, want %d %s", tc.alias, st, code, tc.status, tc.code)
			}
		}
		if st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/query/directory", nil, nil); st != 400 || code != "M_MISSING_PARAM" {
			t.Errorf("query/directory without room_alias: %d %s", st, code)
		}
	})

	t.Run("profile of a user not on B", func(t *testing.T) {
		// Synapse's answer: 400, the user is not hosted here.
		uri := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape("@alice:"+a.ServerName())
		if st, code := fedCall(t, a, b, "GET", uri, nil, nil); st != 400 || code != "M_INVALID_PARAM" {
			t.Errorf("query/profile of a non-local user: %d %s, want 400 M_INVALID_PARAM", st, code)
		}
	})

	t.Run("public rooms", func(t *testing.T) {
		var page struct {
			Chunk []struct {
				RoomID string `json:"room_id"`
				Name   string `json:"name"`
			} `json:"chunk"`
		}
		if st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/publicRooms?limit=10", nil, &page); st != 200 || len(page.Chunk) != 1 || page.Chunk[0].RoomID != lounge {
			t.Fatalf("GET publicRooms: %d %s %+v", st, code, page)
		}
		if st, code := fedCall(t, a, b, "POST", "/_matrix/federation/v1/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "LOUNGE"}}, &page); st != 200 || len(page.Chunk) != 1 {
			t.Fatalf("POST publicRooms: %d %s %+v", st, code, page)
		}
	})

	t.Run("hierarchy", func(t *testing.T) {
		var h struct {
			Room struct {
				RoomID        string `json:"room_id"`
				RoomType      string `json:"room_type"`
				ChildrenState []struct {
					StateKey string `json:"state_key"`
				} `json:"children_state"`
			} `json:"room"`
			Children []struct {
				RoomID string `json:"room_id"`
			} `json:"children"`
			Inaccessible []string `json:"inaccessible_children"`
		}
		st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(space), nil, &h)
		if st != 200 || h.Room.RoomID != space || h.Room.RoomType != "m.space" || len(h.Room.ChildrenState) != 2 {
			t.Fatalf("hierarchy: %d %s %+v", st, code, h)
		}
		if len(h.Children) != 1 || h.Children[0].RoomID != lounge || len(h.Inaccessible) != 1 || h.Inaccessible[0] != den {
			t.Fatalf("hierarchy children: %+v, inaccessible %v; want %s and %s", h.Children, h.Inaccessible, lounge, den)
		}
		for _, room := range []string{den, "!unknown:" + bName} {
			if st, code := fedCall(t, a, b, "GET", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(room), nil, nil); st != 404 || code != "M_NOT_FOUND" {
				t.Errorf("hierarchy of %s: %d %s, want 404", room, st, code)
			}
		}
	})

	t.Run("timestamp_to_event", func(t *testing.T) {
		var ev struct {
			EventID        string `json:"event_id"`
			OriginServerTS int64  `json:"origin_server_ts"`
		}
		uri := "/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(lounge) + "?dir=b&ts=9999999999999"
		if st, code := fedCall(t, a, b, "GET", uri, nil, &ev); st != 200 || ev.EventID != sent || ev.OriginServerTS == 0 {
			t.Fatalf("timestamp_to_event: %d %s %+v, want %s", st, code, ev, sent)
		}
		for _, tc := range []struct {
			uri    string
			status int
		}{
			{"/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(den) + "?dir=b&ts=9999999999999", 404},
			{"/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape("!unknown:"+bName) + "?dir=b&ts=1", 404},
			{"/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(lounge) + "?dir=f&ts=9999999999999", 404},
			{"/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(lounge) + "?dir=x&ts=1", 400},
		} {
			if st, _ := fedCall(t, a, b, "GET", tc.uri, nil, nil); st != tc.status {
				t.Errorf("%s: %d, want %d", tc.uri, st, tc.status)
			}
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		// The plain listener serves the same routes; no signature is no signature.
		for _, p := range []string{
			"/_matrix/federation/v1/query/directory?room_alias=" + url.QueryEscape("#lounge:"+bName),
			"/_matrix/federation/v1/publicRooms",
			"/_matrix/federation/v1/hierarchy/" + url.PathEscape(space),
			"/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(lounge) + "?dir=b&ts=1",
		} {
			resp, err := http.Get(b.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("unsigned GET %s: %d, want 401", p, resp.StatusCode)
			}
		}
	})
}
