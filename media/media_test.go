package media_test

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/server/servertest"
)

// upload posts body as ctype and returns the media path "server/id".
func upload(t *testing.T, c *servertest.Client, body []byte, ctype, query string) string {
	t.Helper()
	r := c.DoWith("POST", "/_matrix/media/v3/upload"+query, body, map[string]string{"Content-Type": ctype})
	if r.Status != 200 {
		t.Fatalf("upload: %s", r)
	}
	uri, ok := strings.CutPrefix(r.Str("content_uri"), "mxc://")
	if !ok {
		t.Fatalf("upload: content_uri %q", r.Str("content_uri"))
	}
	return uri
}

var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake png body")

func TestUploadDownloadRoundTrip(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	cases := []struct {
		name, ctype, query string
		body               []byte
		disposition        string
	}{
		{"png", "image/png", "?filename=cat.png", pngBytes, `inline; filename="cat.png"`},
		{"jpeg no name", "image/jpeg", "", []byte("\xff\xd8\xff\xe0 jpeg-ish"), "inline"},
		{"text with charset", "text/plain; charset=utf-8", "?filename=a.txt", []byte("hello"), `inline; filename="a.txt"`},
		{"pdf", "application/pdf", "?filename=doc.pdf", []byte("%PDF-1.4"), `attachment; filename="doc.pdf"`},
		{"svg is never inline", "image/svg+xml", "?filename=x.svg", []byte("<svg onload=alert(1)/>"), `attachment; filename="x.svg"`},
		{"html", "text/html", "", []byte("<script>alert(1)</script>"), "attachment"},
		{"non-ASCII name", "image/png", "?filename=%C3%A9t%C3%A9%20%22x%22.png", pngBytes, "inline; filename*=utf-8''%C3%A9t%C3%A9%20%22x%22.png"},
		{"binary", "application/octet-stream", "", bytes.Repeat([]byte{0, 1, 2, 255}, 70000), "attachment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mp := upload(t, c, tc.body, tc.ctype, tc.query)
			r := c.Must(200, "GET", "/_matrix/client/v1/media/download/"+mp, nil)
			if !bytes.Equal(r.Body, tc.body) {
				t.Fatalf("downloaded %d bytes, uploaded %d (or different)", len(r.Body), len(tc.body))
			}
			want := map[string]string{
				"Content-Type":                 tc.ctype,
				"Content-Disposition":          tc.disposition,
				"X-Content-Type-Options":       "nosniff",
				"Cross-Origin-Resource-Policy": "cross-origin",
			}
			for k, v := range want {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox; default-src 'none'; script-src 'none';") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
	t.Run("file name in the path wins", func(t *testing.T) {
		mp := upload(t, c, pngBytes, "image/png", "?filename=cat.png")
		r := c.Must(200, "GET", "/_matrix/client/v1/media/download/"+mp+"/dog.png", nil)
		if got := r.Header.Get("Content-Disposition"); got != `inline; filename="dog.png"` {
			t.Errorf("Content-Disposition %q", got)
		}
	})
	t.Run("identical content is stored once", func(t *testing.T) {
		body := []byte("same bytes, twice")
		a, b := upload(t, c, body, "text/plain", ""), upload(t, c, body, "text/plain", "")
		if a == b {
			t.Fatal("two uploads got one media ID")
		}
		if n := contentFiles(t, srv.DataDir); n != len(cases)-1+1 { // the PNG uploads share a file
			t.Errorf("%d content files on disk", n)
		}
	})
}

// contentFiles counts the files under <data>/media outside tmp/.
func contentFiles(t *testing.T, dataDir string) int {
	t.Helper()
	n := 0
	root := filepath.Join(dataDir, "media")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAuthenticatedEndpointsNeedAToken(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	mp := upload(t, c, pngBytes, "image/png", "")
	anon := srv.Client(t)
	for _, path := range []string{
		"/_matrix/client/v1/media/download/" + mp,
		"/_matrix/client/v1/media/download/" + mp + "/x.png",
		"/_matrix/client/v1/media/config",
	} {
		if r := anon.Do("GET", path, nil); r.Status != 401 || r.Errcode() != "M_MISSING_TOKEN" {
			t.Errorf("GET %s without a token: %s", path, r)
		}
	}
	if r := anon.DoWith("POST", "/_matrix/media/v3/upload", pngBytes, map[string]string{"Content-Type": "image/png"}); r.Status != 401 {
		t.Errorf("upload without a token: %s", r)
	}
	if r := anon.Do("POST", "/_matrix/media/v1/create", nil); r.Status != 401 {
		t.Errorf("create without a token: %s", r)
	}
}

func TestLegacyEndpoints(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprint("legacy=", legacy), func(t *testing.T) {
			srv := servertest.Start(t, servertest.Options{LegacyMedia: legacy})
			c := srv.Register(t, servertest.UniqueName("up"), "pw")
			mp := upload(t, c, pngBytes, "image/png", "")
			anon := srv.Client(t)
			for _, path := range []string{
				"/_matrix/media/v3/download/" + mp,
				"/_matrix/media/r0/download/" + mp,
				"/_matrix/media/v3/download/" + mp + "/name.png",
			} {
				r := anon.Do("GET", path, nil)
				if legacy && (r.Status != 200 || !bytes.Equal(r.Body, pngBytes)) {
					t.Errorf("GET %s with --legacy-media: %d", path, r.Status)
				}
				if !legacy && (r.Status != 404 || r.Errcode() != "M_NOT_FOUND") {
					t.Errorf("GET %s frozen: %s", path, r)
				}
			}
			// Remote media is never served unauthenticated.
			if r := anon.Do("GET", "/_matrix/media/v3/download/other.example/abc", nil); r.Status != 404 {
				t.Errorf("legacy remote download: %s", r)
			}
			if r := c.Do("GET", "/_matrix/media/v3/config", nil); r.Status != 200 {
				t.Errorf("legacy config: %s", r)
			}
		})
	}
}

// TestRemoteMediaUnreachable: media of a server that cannot be reached
// is a 502, as Synapse answers, not a 404 that says it does not exist.
func TestRemoteMediaUnreachable(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	if r := c.Do("GET", "/_matrix/client/v1/media/download/other.example/abcdef", nil); r.Status != 502 || r.Errcode() != "M_UNKNOWN" {
		t.Errorf("remote download: %s", r)
	}
}

func TestAsyncUpload(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	alice := srv.Register(t, servertest.UniqueName("alice"), "pw")
	bob := srv.Register(t, servertest.UniqueName("bob"), "pw")
	r := alice.Must(200, "POST", "/_matrix/media/v1/create", map[string]any{})
	mp, ok := strings.CutPrefix(r.Str("content_uri"), "mxc://")
	exp, _ := r.JSON["unused_expires_at"].(float64)
	if !ok || int64(exp) <= time.Now().UnixMilli() {
		t.Fatalf("create: %s", r)
	}
	put := func(c *servertest.Client, path string, body []byte) *servertest.Response {
		return c.DoWith("PUT", "/_matrix/media/v3/upload/"+path+"?filename=later.txt", body, map[string]string{"Content-Type": "text/plain"})
	}
	if r := alice.Do("GET", "/_matrix/client/v1/media/download/"+mp, nil); r.Status != 504 || r.Errcode() != "M_NOT_YET_UPLOADED" {
		t.Errorf("download before upload: %s", r)
	}
	if r := put(bob, mp, []byte("bob's")); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("upload by another user: %s", r)
	}
	if r := put(alice, "localhost/nosuchmedia", []byte("x")); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Errorf("upload to an unknown ID: %s", r)
	}
	if r := put(alice, mp, []byte("the content")); r.Status != 200 {
		t.Fatalf("upload: %s", r)
	}
	if r := put(alice, mp, []byte("again")); r.Status != 409 || r.Errcode() != "M_CANNOT_OVERWRITE_MEDIA" {
		t.Errorf("second upload: %s", r)
	}
	r = alice.Must(200, "GET", "/_matrix/client/v1/media/download/"+mp, nil)
	if string(r.Body) != "the content" || r.Header.Get("Content-Disposition") != `inline; filename="later.txt"` {
		t.Errorf("download: %q %q", r.Body, r.Header.Get("Content-Disposition"))
	}
}

func TestLimits(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{MaxUploadSize: 1000, MediaQuota: 1500})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	r := c.Must(200, "GET", "/_matrix/client/v1/media/config", nil)
	if r.JSON["m.upload.size"] != float64(1000) {
		t.Errorf("config: %s", r)
	}
	if r := c.DoWith("POST", "/_matrix/media/v3/upload", make([]byte, 1001), map[string]string{"Content-Type": "application/octet-stream"}); r.Status != 413 || r.Errcode() != "M_TOO_LARGE" {
		t.Errorf("upload over the size limit: %s", r)
	}
	upload(t, c, make([]byte, 1000), "application/octet-stream", "")
	if r := c.DoWith("POST", "/_matrix/media/v3/upload", make([]byte, 600), map[string]string{"Content-Type": "application/octet-stream"}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("upload over the quota: %s", r)
	}
	other := srv.Register(t, servertest.UniqueName("up"), "pw")
	upload(t, other, make([]byte, 600), "application/octet-stream", "") // quotas are per user
}

func TestRangeAndETag(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	body := []byte("0123456789abcdefghij")
	mp := upload(t, c, body, "video/mp4", "")
	path := "/_matrix/client/v1/media/download/" + mp
	r := c.DoWith("GET", path, nil, map[string]string{"Range": "bytes=5-9"})
	if r.Status != 206 || string(r.Body) != "56789" || r.Header.Get("Content-Range") != "bytes 5-9/20" {
		t.Errorf("range 5-9: %d %q %q", r.Status, r.Body, r.Header.Get("Content-Range"))
	}
	r = c.DoWith("GET", path, nil, map[string]string{"Range": "bytes=-3"})
	if r.Status != 206 || string(r.Body) != "hij" {
		t.Errorf("suffix range: %d %q", r.Status, r.Body)
	}
	if r := c.DoWith("GET", path, nil, map[string]string{"Range": "bytes=50-"}); r.Status != 416 {
		t.Errorf("unsatisfiable range: %d", r.Status)
	}
	r = c.Must(200, "GET", path, nil)
	etag := r.Header.Get("ETag")
	if etag == "" || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("ETag %q, Cache-Control %q", etag, r.Header.Get("Cache-Control"))
	}
	if r := c.DoWith("GET", path, nil, map[string]string{"If-None-Match": etag}); r.Status != 304 || len(r.Body) != 0 {
		t.Errorf("If-None-Match: %d", r.Status)
	}
}

// TestInterruptedUpload cuts an upload off mid-body: nothing may be left
// under a content name, and the temporary file must go.
func TestInterruptedUpload(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 3000000\r\n\r\n", c.Token)
	conn.Write(bytes.Repeat([]byte("a"), 2_500_000)) // past fasthttp's pre-read, into the temp file
	tmp := filepath.Join(srv.DataDir, "media", "tmp")
	waitFor(t, func() bool { ents, _ := os.ReadDir(tmp); return len(ents) == 1 }, "the upload to reach a temp file")
	conn.Close()
	waitFor(t, func() bool { ents, _ := os.ReadDir(tmp); return len(ents) == 0 }, "the temp file to go")
	if n := contentFiles(t, srv.DataDir); n != 0 {
		t.Errorf("%d files under content names after an interrupted upload", n)
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestThumbnail(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	img := image.NewRGBA(image.Rect(0, 0, 400, 300))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	mp := upload(t, c, buf.Bytes(), "image/png", "")
	path := "/_matrix/client/v1/media/thumbnail/" + mp
	for _, q := range []struct {
		query string
		w, h  int
	}{
		{"?width=90&height=90&method=crop", 96, 96},
		{"?width=90&height=90&method=crop", 96, 96}, // from the cache
		{"?width=300&height=200&method=scale", 320, 240},
	} {
		r := c.Must(200, "GET", path+q.query, nil)
		cfg, _, err := image.DecodeConfig(bytes.NewReader(r.Body))
		if err != nil || cfg.Width != q.w || cfg.Height != q.h {
			t.Errorf("%s: %dx%d (%v), want %dx%d", q.query, cfg.Width, cfg.Height, err, q.w, q.h)
		}
	}
	text := upload(t, c, []byte("not an image"), "text/plain", "")
	if r := c.Do("GET", "/_matrix/client/v1/media/thumbnail/"+text+"?width=32&height=32", nil); r.Status != 400 {
		t.Errorf("thumbnail of text: %s", r)
	}
	if r := srv.Client(t).Do("GET", path+"?width=32&height=32", nil); r.Status != 401 {
		t.Errorf("thumbnail without a token: %s", r)
	}
}

// An uploaded image's standard thumbnails are made in the background, so
// they are on disk before any client asks.
func TestStandardThumbnailsPregenerated(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	c := srv.Register(t, servertest.UniqueName("up"), "pw")
	img := image.NewRGBA(image.Rect(0, 0, 1200, 900))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	upload(t, c, buf.Bytes(), "image/png", "")
	thumbs := filepath.Join(srv.DataDir, "media", "thumbs")
	count := func() int {
		n := 0
		_ = filepath.WalkDir(thumbs, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	waitFor(t, func() bool { return count() == 5 }, "the five standard thumbnails")
}

// BenchmarkDownload50MiB measures the authenticated download of a 50 MiB
// file over loopback, streamed from disk.
func BenchmarkDownload50MiB(b *testing.B) {
	srv := servertest.Start(b, servertest.Options{})
	c := srv.Register(b, servertest.UniqueName("up"), "pw")
	body := bytes.Repeat([]byte("0123456789abcdef"), 50<<20/16)
	r := c.DoWith("POST", "/_matrix/media/v3/upload", body, map[string]string{"Content-Type": "application/octet-stream"})
	if r.Status != 200 {
		b.Fatalf("upload: %s", r)
	}
	path := "/_matrix/client/v1/media/download/" + strings.TrimPrefix(r.Str("content_uri"), "mxc://")
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(body)) {
			b.Fatalf("downloaded %d bytes", n)
		}
	}
}
