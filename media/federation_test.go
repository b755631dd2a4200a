package media_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth/server"
	"hearth/server/servertest"
)

// testPNG returns a w×h PNG of one colour.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{R: 200, G: 40, B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mediaPart is one part of a multipart answer.
type mediaPart struct {
	header textproto.MIMEHeader
	body   []byte
}

// fedMedia sends a GET signed by from to to's federation API and returns
// the status and, for a 200, the parts of its multipart/mixed body.
func fedMedia(t *testing.T, from, to *servertest.Server, uri string) (int, []mediaPart) {
	t.Helper()
	c := from.Federation().Client()
	req, err := c.NewRequest(context.Background(), "GET", to.ServerName(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("%s: Content-Type %q, want multipart/mixed with a boundary", uri, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var parts []mediaPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: multipart: %v", uri, err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("%s: part: %v", uri, err)
		}
		parts = append(parts, mediaPart{p.Header, body})
	}
	return 200, parts
}

// TestFederationMediaEndpoints: B serves its own media to A as the spec's
// two-part multipart/mixed answer, and nothing to an unsigned request.
func TestFederationMediaEndpoints(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	bob := b.Register(t, "bob", "password-bob")
	pic := testPNG(t, 200, 100)
	mp := upload(t, bob, pic, "image/png", "?filename=cat.png")
	id := mp[strings.IndexByte(mp, '/')+1:]

	st, parts := fedMedia(t, a, b, "/_matrix/federation/v1/media/download/"+id)
	if st != 200 || len(parts) != 2 {
		t.Fatalf("download: %d, %d parts; want 200 and 2", st, len(parts))
	}
	if ct := parts[0].header.Get("Content-Type"); ct != "application/json" || string(parts[0].body) != "{}" {
		t.Errorf("metadata part: %q %q, want application/json {}", ct, parts[0].body)
	}
	if ct := parts[1].header.Get("Content-Type"); ct != "image/png" || !bytes.Equal(parts[1].body, pic) {
		t.Errorf("content part: %q, %d bytes; want image/png and the %d uploaded", ct, len(parts[1].body), len(pic))
	}
	if cd := parts[1].header.Get("Content-Disposition"); cd != `inline; filename="cat.png"` {
		t.Errorf("content part Content-Disposition %q", cd)
	}

	st, parts = fedMedia(t, a, b, "/_matrix/federation/v1/media/thumbnail/"+id+"?width=32&height=32&method=scale")
	if st != 200 || len(parts) != 2 || string(parts[0].body) != "{}" {
		t.Fatalf("thumbnail: %d, %d parts", st, len(parts))
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(parts[1].body)); err != nil || cfg.Width > 200 || cfg.Width < 32 {
		t.Errorf("thumbnail part (%s): %+v %v", parts[1].header.Get("Content-Type"), cfg, err)
	}

	for _, tc := range []struct {
		uri  string
		want int
	}{
		{"/_matrix/federation/v1/media/download/nonexistent", 404},
		{"/_matrix/federation/v1/media/thumbnail/nonexistent?width=32&height=32", 404},
		{"/_matrix/federation/v1/media/thumbnail/" + id + "?width=0&height=32", 400},
	} {
		if st, _ := fedMedia(t, a, b, tc.uri); st != tc.want {
			t.Errorf("%s: %d, want %d", tc.uri, st, tc.want)
		}
	}
	resp, err := http.Get(b.URL + "/_matrix/federation/v1/media/download/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unsigned download: %d, want 401", resp.StatusCode)
	}
}

// TestRemoteMediaCached: a client of A downloads and thumbnails media of
// B; A fetched it once and serves it again with B gone.
func TestRemoteMediaCached(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	bob := b.Register(t, "bob", "password-bob")
	alice := a.Register(t, "alice", "password-alice")
	pic := testPNG(t, 300, 200)
	mp := upload(t, bob, pic, "image/png", "?filename=cat.png")
	bName := b.ServerName()

	check := func(when string) {
		t.Helper()
		r := alice.Must(200, "GET", "/_matrix/client/v1/media/download/"+mp, nil)
		if !bytes.Equal(r.Body, pic) || r.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("%s: download %d bytes of %s, want the %d uploaded image/png", when, len(r.Body), r.Header.Get("Content-Type"), len(pic))
		}
		if cd := r.Header.Get("Content-Disposition"); cd != `inline; filename="cat.png"` {
			t.Errorf("%s: Content-Disposition %q", when, cd)
		}
		r = alice.Must(200, "GET", "/_matrix/client/v1/media/thumbnail/"+mp+"?width=64&height=64&method=crop", nil)
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(r.Body)); err != nil || cfg.Width != 96 || cfg.Height != 96 {
			t.Fatalf("%s: thumbnail %+v %v, want 96x96", when, cfg, err)
		}
	}
	check("from B")
	wantErr(t, "unknown remote media", alice.Do("GET", "/_matrix/client/v1/media/download/"+bName+"/nonexistent", nil), 404, "M_NOT_FOUND")

	b.Stop(t)
	check("with B stopped")
	wantErr(t, "uncached media of a stopped server", alice.Do("GET", "/_matrix/client/v1/media/download/"+bName+"/other", nil), 502, "M_UNKNOWN")
}

func wantErr(t *testing.T, what string, r *servertest.Response, status int, errcode string) {
	t.Helper()
	if r.Status != status || r.Errcode() != errcode {
		t.Fatalf("%s: want %d %s, got %s", what, status, errcode, r)
	}
}

// TestRemoteMediaFromOrigin: what A makes of the answers an origin may
// give, from a fake origin: one fetch for many concurrent downloads, a
// Location part followed, the deprecated endpoint when the federation one
// is unknown, and refusals.
func TestRemoteMediaFromOrigin(t *testing.T) {
	ca := servertest.NewCA(t)
	a := ca.Start(t, servertest.Options{MaxUploadSize: 4096})
	alice := a.Register(t, "alice", "password-alice")
	pic := testPNG(t, 20, 20)
	var fetches atomic.Int32
	var origin string

	multipartBody := func(w http.ResponseWriter, second textproto.MIMEHeader, body []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
		p.Write([]byte("{}"))
		p, _ = mw.CreatePart(second)
		p.Write(body)
		mw.Close()
		w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
		w.Write(buf.Bytes())
	}
	matrixErr := func(w http.ResponseWriter, status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errcode":%q,"error":"x"}`, code)
	}
	fake := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fed := "/_matrix/federation/v1/media/download/"
		switch {
		case r.URL.Path == fed+"shared":
			fetches.Add(1)
			time.Sleep(200 * time.Millisecond) // long enough for every download to be waiting
			multipartBody(w, textproto.MIMEHeader{"Content-Type": {"image/png"}}, pic)
		case r.URL.Path == fed+"moved":
			multipartBody(w, textproto.MIMEHeader{"Location": {"https://" + origin + "/cdn/moved.png"}}, nil)
		case r.URL.Path == "/cdn/moved.png":
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Disposition", `attachment; filename="moved.png"`)
			w.Write(pic)
		case r.URL.Path == fed+"old":
			matrixErr(w, 404, "M_UNRECOGNIZED")
		case r.URL.Path == "/_matrix/media/v3/download/"+origin+"/old" && r.URL.Query().Get("allow_remote") == "false":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("from the old endpoint"))
		case r.URL.Path == fed+"big":
			multipartBody(w, textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}}, make([]byte, 5000))
		case r.URL.Path == fed+"pending":
			matrixErr(w, 504, "M_NOT_YET_UPLOADED")
		case r.URL.Path == fed+"notmultipart":
			w.Header().Set("Content-Type", "image/png")
			w.Write(pic)
		default:
			matrixErr(w, 404, "M_NOT_FOUND")
		}
	}))
	certFile, keyFile, err := server.MintCertificate(ca.CertFile, ca.KeyFile, "localhost", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlsPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fake.TLS = cert
	fake.StartTLS()
	defer fake.Close()
	origin = "localhost:" + fake.URL[strings.LastIndexByte(fake.URL, ':')+1:]

	t.Run("concurrent downloads share one fetch", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				r := alice.Do("GET", "/_matrix/client/v1/media/download/"+origin+"/shared", nil)
				if r.Status != 200 || !bytes.Equal(r.Body, pic) {
					t.Errorf("concurrent download: %d, %d bytes", r.Status, len(r.Body))
				}
			})
		}
		wg.Wait()
		alice.Must(200, "GET", "/_matrix/client/v1/media/download/"+origin+"/shared", nil)
		if n := fetches.Load(); n != 1 {
			t.Errorf("the origin was asked %d times, want once", n)
		}
	})
	t.Run("location followed", func(t *testing.T) {
		r := alice.Must(200, "GET", "/_matrix/client/v1/media/download/"+origin+"/moved", nil)
		if !bytes.Equal(r.Body, pic) || r.Header.Get("Content-Type") != "image/png" || !strings.Contains(r.Header.Get("Content-Disposition"), "moved.png") {
			t.Errorf("via Location: %d bytes, %s, %s", len(r.Body), r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"))
		}
	})
	t.Run("deprecated endpoint as fallback", func(t *testing.T) {
		r := alice.Must(200, "GET", "/_matrix/client/v1/media/download/"+origin+"/old", nil)
		if string(r.Body) != "from the old endpoint" || r.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("fallback: %q %s", r.Body, r.Header.Get("Content-Type"))
		}
	})
	for _, tc := range []struct {
		id      string
		status  int
		errcode string
	}{
		{"big", 502, "M_TOO_LARGE"},
		{"pending", 504, "M_NOT_YET_UPLOADED"},
		{"gone", 404, "M_NOT_FOUND"},
		{"notmultipart", 502, "M_UNKNOWN"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			wantErr(t, tc.id, alice.Do("GET", "/_matrix/client/v1/media/download/"+origin+"/"+tc.id, nil), tc.status, tc.errcode)
		})
	}
}

func tlsPair(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}
