package httpx

import (
	"encoding/json"
	"testing"

	"hearth/server/mxerr"
)

// FuzzDecodeJSON: untrusted request bodies never panic the decoder, and
// every refusal is a 400 Matrix error.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, ``, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"a"}}`,
		`[1,2]`, `"x"`, `{"a":`, `{"a":"\"}`, `{"devices":["A","B"]}`, `{"a":[[[[[[]]]]]]}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Type       string   `json:"type"`
			Devices    []string `json:"devices"`
			Identifier *struct {
				User string `json:"user"`
			} `json:"identifier"`
			Extra map[string]any `json:"extra"`
		}
		err := DecodeJSON(body, &v)
		if err == nil {
			if !json.Valid(body) && len(body) > 0 {
				for _, c := range body {
					if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
						t.Fatalf("accepted invalid JSON %q", body)
					}
				}
			}
			return
		}
		e, ok := mxerr.As(err)
		if !ok || e.Status != 400 || (e.Code != "M_NOT_JSON" && e.Code != "M_BAD_JSON") {
			t.Fatalf("DecodeJSON(%q) = %v, want a 400 M_NOT_JSON or M_BAD_JSON", body, err)
		}
	})
}

// FuzzRouterMatch: hostile paths never panic the router, and a match
// always yields decoded parameters for the pattern's names.
func FuzzRouterMatch(f *testing.F) {
	m := &Mux{}
	h := func(r *Request) (any, error) { return nil, nil }
	m.Handle("/_matrix/client", []Route{
		{Method: "GET", Path: "/v3/rooms/{roomId}/state/{type}/{key}", Handler: h},
		{Method: "GET", Path: "/v3/profile/{userId}", Handler: h},
		{Method: "GET", Path: "/versions", Handler: h},
	})
	for _, seed := range []string{"/_matrix/client/versions", "/_matrix/client/v3/rooms/%21a/state/x/", "//", "", "/%", "/_matrix/client/r0/profile/%40a%3Ab"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		n, params, ok := m.match(path)
		if !ok {
			return
		}
		if n.methods == nil {
			t.Fatalf("%q matched a node without routes", path)
		}
		for _, p := range params {
			if p.name == "" {
				t.Fatalf("%q: unnamed parameter", path)
			}
		}
	})
}
