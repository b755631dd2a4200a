package client_test

import (
	"testing"

	"hearth/server/servertest"
)

func searchIDs(t *testing.T, c *servertest.Client, term string) []string {
	t.Helper()
	r := c.Must(200, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": term})
	var ids []string
	for _, res := range r.JSON["results"].([]any) {
		ids = append(ids, res.(map[string]any)["user_id"].(string))
	}
	return ids
}

// Spec: "User directory": people who share a room with the searcher or
// sit in public rooms, matched on user ID and display name.
func TestUserDirectory(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	s.Register(t, "dave", "pw") // in no room: never found
	bob.Must(200, "PUT", "/_matrix/client/v3/profile/@bob:localhost/displayname", map[string]any{"displayname": "Grandpa Bob"})

	private := createRoom(t, carol, map[string]any{"preset": "private_chat", "invite": []string{"@alice:localhost"}})
	alice.Must(200, "POST", roomPath(private, "/join"), map[string]any{})
	public := createRoom(t, bob, map[string]any{"preset": "public_chat"})
	_ = public

	if ids := searchIDs(t, alice, "grandpa"); len(ids) != 1 || ids[0] != "@bob:localhost" {
		t.Errorf("display name search: %v", ids)
	}
	if ids := searchIDs(t, alice, "carol"); len(ids) != 1 {
		t.Errorf("shared private room: %v", ids)
	}
	if ids := searchIDs(t, alice, "dave"); len(ids) != 0 {
		t.Errorf("a user in no room was found: %v", ids)
	}
	// dave shares nothing with carol's private room: he cannot find carol.
	dave := s.Login(t, "dave", "pw")
	if ids := searchIDs(t, dave, "carol"); len(ids) != 0 {
		t.Errorf("private room member found by a stranger: %v", ids)
	}
	if ids := searchIDs(t, dave, "bob"); len(ids) != 1 {
		t.Errorf("public room member not found: %v", ids)
	}
	if r := alice.Do("POST", "/_matrix/client/v3/user_directory/search", map[string]any{}); r.Status != 400 || r.Errcode() != "M_MISSING_PARAM" {
		t.Errorf("missing search_term: %s", r)
	}
}
