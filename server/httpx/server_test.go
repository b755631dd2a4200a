package httpx

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"hearth/server/mxerr"
)

// serve starts a Server for routes on a loopback listener.
func serve(t *testing.T, routes []Route, auth Authenticator) string {
	t.Helper()
	mux := &Mux{}
	mux.Handle("/_matrix/client", routes)
	if auth == nil {
		auth = func(string, string, bool) (*Principal, error) { return nil, mxerr.UnknownToken(false) }
	}
	srv := NewServer(mux, auth, slog.New(slog.NewTextHandler(io.Discard, nil)), DefaultMaxBody)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body, resp.Header
}

// A panicking handler gives the client 500 M_UNKNOWN with the request ID,
// and the server goes on serving.
func TestPanicIsA500(t *testing.T) {
	url := serve(t, []Route{
		{Method: "GET", Path: "/v3/boom", Handler: func(r *Request) (any, error) { panic("kaboom") }},
		{Method: "GET", Path: "/v3/ok", Handler: func(r *Request) (any, error) { return map[string]int{"n": 1}, nil }},
	}, nil)
	status, body, _ := get(t, url+"/_matrix/client/v3/boom")
	if status != 500 || body["errcode"] != "M_UNKNOWN" || body["request_id"] == "" || strings.Contains(body["error"].(string), "kaboom") {
		t.Fatalf("panic: %d %v", status, body)
	}
	if status, body, _ := get(t, url+"/_matrix/client/r0/ok"); status != 200 || body["n"] != 1.0 {
		t.Fatalf("after panic: %d %v", status, body)
	}
}

// An internal error's text never reaches the client.
func TestInternalErrorHidden(t *testing.T) {
	url := serve(t, []Route{
		{Method: "GET", Path: "/v3/err", Handler: func(r *Request) (any, error) {
			return nil, io.ErrUnexpectedEOF
		}},
	}, nil)
	status, body, _ := get(t, url+"/_matrix/client/v3/err")
	if status != 500 || body["errcode"] != "M_UNKNOWN" || strings.Contains(body["error"].(string), "EOF") {
		t.Fatalf("got %d %v", status, body)
	}
}

// A rate-limited route answers 429 with Retry-After and retry_after_ms.
func TestRateLimitedRoute(t *testing.T) {
	lim := NewLimiter(0.5, 2)
	url := serve(t, []Route{
		{Method: "GET", Path: "/v3/limited", Limit: lim, Handler: func(r *Request) (any, error) { return nil, nil }},
	}, nil)
	for i := range 2 {
		if status, body, _ := get(t, url+"/_matrix/client/v3/limited"); status != 200 {
			t.Fatalf("request %d: %d %v", i, status, body)
		}
	}
	status, body, hdr := get(t, url+"/_matrix/client/v3/limited")
	if status != 429 || body["errcode"] != "M_LIMIT_EXCEEDED" || hdr.Get("Retry-After") != "2" {
		t.Fatalf("third request: %d %v Retry-After=%q", status, body, hdr.Get("Retry-After"))
	}
	if ms, _ := body["retry_after_ms"].(float64); ms < 1000 || ms > 2000 {
		t.Fatalf("retry_after_ms %v", body["retry_after_ms"])
	}
}

// Path parameters are matched on the raw path and then decoded, so an
// encoded "/" stays inside its parameter; static segments win over
// parameters; an empty trailing segment is an empty parameter.
func TestRouterParams(t *testing.T) {
	echo := func(names ...string) Handler {
		return func(r *Request) (any, error) {
			out := map[string]string{}
			for _, n := range names {
				out[n] = r.Param(n)
			}
			return out, nil
		}
	}
	url := serve(t, []Route{
		{Method: "GET", Path: "/v3/rooms/{roomId}/state/{type}/{key}", Handler: echo("roomId", "type", "key")},
		{Method: "GET", Path: "/v3/rooms/{roomId}/state", Handler: echo("roomId")},
		{Method: "GET", Path: "/v3/rooms/{roomId}/members", Handler: echo("roomId")},
	}, nil)
	cases := []struct {
		path string
		want map[string]any
	}{
		{"/v3/rooms/%21abc%3Aexample.org/state/m.room.name/", map[string]any{"roomId": "!abc:example.org", "type": "m.room.name", "key": ""}},
		{"/v3/rooms/!abc:x/state/a%2Fb/%40u%3Ax", map[string]any{"roomId": "!abc:x", "type": "a/b", "key": "@u:x"}},
		{"/v3/rooms/!abc:x/state", map[string]any{"roomId": "!abc:x"}},
		{"/v3/rooms/state/state", map[string]any{"roomId": "state"}},
	}
	for _, tc := range cases {
		status, body, _ := get(t, url+"/_matrix/client"+tc.path)
		if status != 200 {
			t.Errorf("%s: %d %v", tc.path, status, body)
			continue
		}
		for k, v := range tc.want {
			if body[k] != v {
				t.Errorf("%s: param %s = %v, want %v", tc.path, k, body[k], v)
			}
		}
	}
	if status, body, _ := get(t, url+"/_matrix/client/v3/rooms/x/state/too/many/segments"); status != 404 || body["errcode"] != "M_UNRECOGNIZED" {
		t.Errorf("too many segments: %d %v", status, body)
	}
}

func TestLimiterRefills(t *testing.T) {
	l := NewLimiter(10, 1)
	now := time.Unix(1000, 0)
	if ok, _ := l.Allow("k", now); !ok {
		t.Fatal("first request refused")
	}
	if ok, wait := l.Allow("k", now); ok || wait != 100*time.Millisecond {
		t.Fatalf("second request: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.Allow("other", now); !ok {
		t.Fatal("keys share a bucket")
	}
	if ok, _ := l.Allow("k", now.Add(100*time.Millisecond)); !ok {
		t.Fatal("bucket did not refill")
	}
	var nilLimiter *Limiter
	if ok, _ := nilLimiter.Allow("k", now); !ok {
		t.Fatal("nil limiter refused")
	}
}
