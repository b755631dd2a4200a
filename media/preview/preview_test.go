package preview_test

import (
	"bytes"
	"fmt"
	"image"
	pngenc "image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"hearth/server/servertest"
)

// site is a web server for the previews to fetch, on 127.0.0.1: reachable
// only because the test server allows private addresses.
func site(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	mux := http.NewServeMux()
	page := func(path, ctype, body string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", ctype)
			io.WriteString(w, body)
		})
	}
	page("/og", "text/html; charset=utf-8", `<!doctype html><html><head>
		<title>Plain title</title>
		<meta name="description" content="Plain description">
		<meta property="og:title" content="  Holiday
			photos ">
		<meta property="og:description" content="Three days by the sea.">
		<meta property="og:site_name" content="Family blog">
		<meta property="og:type" content="article">
		<meta property="og:image" content="/beach.jpg">
		<meta property="og:image:width" content="800">
		<meta property="og:title" content="A second og:title is ignored">
		</head><body><h1>Hi</h1></body></html>`)
	page("/plain", "text/html", `<html><head><title>Just a title</title>
		<meta name="description" content="Just a description"></head><body></body></html>`)
	page("/latin1", "text/html; charset=iso-8859-1", "<title>Caf\xe9 cr\xe8me</title>")
	// 12 MiB, and saying so in Content-Length: the preview reads the first
	// MiB and hangs up rather than refusing the page or reading it all.
	big := "<html><head><title>Big page</title></head><body>" + strings.Repeat("<p>filler text</p>", 12<<20/18) +
		`<meta property="og:description" content="past the first MiB"></body></html>`
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		io.WriteString(w, big)
	})
	page("/pdf", "application/pdf", "%PDF-1.4")
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/plain", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

func previewPath(prefix, target string) string {
	return prefix + "/preview_url?url=" + url.QueryEscape(target)
}

const clientV1 = "/_matrix/client/v1/media"

func TestPreview(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	web, _ := site(t)

	tests := []struct {
		name string
		path string
		want map[string]any // every field of the answer
	}{
		{"OpenGraph", "/og", map[string]any{
			// No media store for previews yet: og:image must be an mxc://
			// URI, so it and its size are left out rather than the
			// page's own URL passed on.
			"og:title": "Holiday photos", "og:description": "Three days by the sea.",
			"og:site_name": "Family blog", "og:type": "article",
		}},
		{"title and description fallback", "/plain", map[string]any{
			"og:title": "Just a title", "og:description": "Just a description",
		}},
		{"charset from Content-Type", "/latin1", map[string]any{"og:title": "Café crème"}},
		{"page cut after 1 MiB", "/big", map[string]any{"og:title": "Big page"}},
		{"redirect followed", "/redirect", map[string]any{
			"og:title": "Just a title", "og:description": "Just a description",
		}},
		{"not a page", "/pdf", map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := alice.Must(200, "GET", previewPath(clientV1, web.URL+tt.path), nil)
			if len(r.JSON) != len(tt.want) {
				t.Errorf("got %s, want %v", r, tt.want)
			}
			for k, v := range tt.want {
				if r.JSON[k] != v {
					t.Errorf("%s = %#v, want %#v", k, r.JSON[k], v)
				}
			}
		})
	}
}

func TestPreviewLegacyPaths(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	anon := s.Client(t)
	web, _ := site(t)
	for _, prefix := range []string{clientV1, "/_matrix/media/v3", "/_matrix/media/r0"} {
		t.Run(prefix, func(t *testing.T) {
			r := alice.Must(200, "GET", previewPath(prefix, web.URL+"/plain")+"&ts=1510610716656", nil)
			if r.Str("og:title") != "Just a title" {
				t.Errorf("got %s", r)
			}
			if r := anon.Do("GET", previewPath(prefix, web.URL+"/plain"), nil); r.Status != 401 || r.Errcode() != "M_MISSING_TOKEN" {
				t.Errorf("without a token: got %s, want 401 M_MISSING_TOKEN", r)
			}
		})
	}
}

func TestPreviewErrors(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	web, _ := site(t)

	tests := []struct {
		name    string
		path    string
		status  int
		errcode string
	}{
		{"no url", clientV1 + "/preview_url", 400, "M_MISSING_PARAM"},
		{"empty url", clientV1 + "/preview_url?url=", 400, "M_MISSING_PARAM"},
		{"ftp", previewPath(clientV1, "ftp://example.org/file"), 400, "M_INVALID_PARAM"},
		{"file", previewPath(clientV1, "file:///etc/passwd"), 400, "M_INVALID_PARAM"},
		{"javascript", previewPath(clientV1, "javascript:alert(1)"), 400, "M_INVALID_PARAM"},
		{"relative", previewPath(clientV1, "/just/a/path"), 400, "M_INVALID_PARAM"},
		{"no host", previewPath(clientV1, "http:///path"), 400, "M_INVALID_PARAM"},
		{"not a URL", previewPath(clientV1, "http://exa mple.org/%zz"), 400, "M_INVALID_PARAM"},
		{"bad ts", previewPath(clientV1, web.URL+"/plain") + "&ts=yesterday", 400, "M_INVALID_PARAM"},
		{"site answers 404", previewPath(clientV1, web.URL+"/gone"), 502, "M_UNKNOWN"},
		{"nothing listening", previewPath(clientV1, "http://127.0.0.1:1/"), 502, "M_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := alice.Do("GET", tt.path, nil)
			if r.Status != tt.status || r.Errcode() != tt.errcode {
				t.Errorf("got %s, want %d %s", r, tt.status, tt.errcode)
			}
		})
	}
}

// With the guard on (production's default), a page on 127.0.0.1 is
// refused however it is named, and the page server never sees a request.
func TestPreviewGuard(t *testing.T) {
	s := servertest.Start(t, servertest.Options{SSRFGuard: true})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	web, hits := site(t)
	port := web.Listener.Addr().(*net.TCPAddr).Port

	for _, target := range []string{
		web.URL + "/og",
		fmt.Sprintf("http://localhost:%d/og", port),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/og", port),
		fmt.Sprintf("http://0.0.0.0:%d/og", port),
		"http://169.254.169.254/latest/meta-data/",
	} {
		t.Run(target, func(t *testing.T) {
			r := alice.Do("GET", previewPath(clientV1, target), nil)
			if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
				t.Errorf("got %s, want 403 M_FORBIDDEN", r)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the private site served %d requests", n)
	}
}

// A preview asked for again is answered from the cache: a link in a busy
// room is fetched once, not once per member.
func TestPreviewCached(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	bob := s.Register(t, servertest.UniqueName("bob"), "password")
	web, hits := site(t)
	alice.Must(200, "GET", previewPath(clientV1, web.URL+"/og"), nil)
	r := bob.Must(200, "GET", previewPath("/_matrix/media/v3", web.URL+"/og#comments"), nil)
	if r.Str("og:title") != "Holiday photos" {
		t.Errorf("cached preview: %s", r)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the page was fetched %d times, want 1", n)
	}
}

// A page's og:image is fetched, stored as local media and given as an
// mxc:// URI whose content is the image.
func TestPreviewImageStored(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, servertest.UniqueName("alice"), "password")
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = byte(i)
	}
	var png bytes.Buffer
	if err := pngenc.Encode(&png, img); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<html><head><meta property="og:title" content="Garden"><meta property="og:image" content="/pic.png"></head></html>`)
	})
	mux.HandleFunc("/pic.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png.Bytes())
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)

	r := alice.Must(200, "GET", previewPath(clientV1, web.URL+"/page"), nil)
	mxc := r.Str("og:image")
	if !strings.HasPrefix(mxc, "mxc://localhost/") || r.Str("og:title") != "Garden" || r.JSON["og:image:width"] != 40.0 || r.JSON["og:image:height"] != 30.0 {
		t.Fatalf("preview: %s", r)
	}
	dl := alice.Must(200, "GET", "/_matrix/client/v1/media/download/localhost/"+strings.TrimPrefix(mxc, "mxc://localhost/"), nil)
	if !bytes.Equal(dl.Body, png.Bytes()) {
		t.Fatalf("stored image differs: %d bytes, want %d", len(dl.Body), png.Len())
	}
}
