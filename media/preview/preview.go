// Package preview serves URL previews (GET .../media/preview_url): the
// server fetches a page a client names, through the SSRF guard of
// server/netguard, and answers its OpenGraph data, falling back to the
// page's <title> and <meta name="description">.
package preview

import (
	"bytes"
	"context"
	_ "golang.org/x/image/webp"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/netguard"
)

// Limits of one preview. A page is cut at MaxHTML bytes and parsed as far
// as it got: the <head> with the tags previews use comes first.
const (
	MaxHTML  = 1 << 20
	MaxImage = 10 << 20
	Timeout  = 10 * time.Second
)

// userAgent names us to the sites we fetch; some answer bots with the
// OpenGraph-rich page they give link unfurlers.
const userAgent = "Hearth (Matrix homeserver; URL preview bot)"

// Config configures URL previews.
type Config struct {
	// AllowPrivate lets previews reach private, loopback and link-local
	// addresses (tests; an operator's own network). Off, such URLs are
	// refused with 403 M_FORBIDDEN.
	AllowPrivate bool
	// StoreImage stores a preview's image in the media repository for
	// userID and returns its mxc:// URI. Nil leaves og:image out of
	// previews, as the spec wants an mxc:// URI there, never the page's.
	StoreImage  func(ctx context.Context, userID, contentType string, body io.Reader) (string, error)
	NoRateLimit bool
	Log         *slog.Logger
}

// Service answers preview requests, with a cache of recent previews.
type Service struct {
	cfg    Config
	client *http.Client
	cache  *cache
	limit  *httpx.Limiter
	now    func() time.Time
}

// New returns a preview service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Service{
		cfg: cfg,
		// No body limit on the client: a page of any declared size is
		// read up to MaxHTML and cut, an image is bounded in storeImage.
		client: netguard.NewClient(cfg.AllowPrivate, Timeout, 0),
		cache:  newCache(cacheSize, cacheTTL),
		now:    time.Now,
	}
	if !cfg.NoRateLimit {
		// Each miss makes the server fetch a page: a few per second per
		// client is plenty for a chat timeline scrolling past links.
		s.limit = httpx.NewLimiter(2, 20)
	}
	return s
}

// Routes returns the deprecated preview route served under /_matrix/media
// (the spec has it require an access token too, unlike the legacy
// downloads).
func (s *Service) Routes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v3/preview_url", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.previewURL), Limit: s.limit},
	}
}

// ClientRoutes returns the authenticated preview route of spec v1.11,
// served under /_matrix/client.
func (s *Service) ClientRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v1/media/preview_url", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.previewURL), Limit: s.limit},
	}
}

// errBlocked is the answer for a URL on a private network. Synapse makes
// it look like a DNS failure (502); saying what happened is kinder to an
// operator reading a client's error.
var errBlocked = mxerr.Forbidden("URL previews of private or local network addresses are not allowed on this server")

// errFetch is a 502: the fault is the remote site's, not the client's.
func errFetch(format string, args ...any) *mxerr.Error {
	e := mxerr.Unknown(format, args...)
	e.Status = http.StatusBadGateway
	return e
}

func (s *Service) previewURL(r *httpx.Request) (map[string]any, error) {
	raw := r.Query("url")
	if raw == "" {
		return nil, mxerr.MissingParam("Missing url parameter")
	}
	if ts := r.Query("ts"); ts != "" {
		// The spec lets us answer a newer preview than ts; it only has
		// to be a number.
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			return nil, mxerr.InvalidParam("ts must be an integer")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, mxerr.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment, u.RawFragment = "", "" // never sent to the site: one page, one cache entry
	key := u.String()
	if og, ok := s.cache.get(key, s.now()); ok {
		return og, nil
	}
	og, err := s.preview(r.Context(), key, r.Principal.UserID)
	if err != nil {
		return nil, err
	}
	s.cache.put(key, og, s.now())
	return og, nil
}

// preview fetches u and returns its OpenGraph data.
func (s *Service) preview(ctx context.Context, u, userID string) (map[string]any, error) {
	resp, err := s.get(ctx, u, "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ctype := resp.Header.Get("Content-Type")
	mediaType, _, _ := mime.ParseMediaType(ctype)
	switch {
	case mediaType == "text/html" || mediaType == "application/xhtml+xml":
		og, err := parseHTML(io.LimitReader(resp.Body, MaxHTML), ctype)
		if err != nil {
			s.cfg.Log.Info("URL preview: reading the page", "url", u, "err", err)
			return nil, errFetch("Could not read the page")
		}
		resp.Body.Close() // the rest of a cut page is not wanted
		if img, _ := og["og:image"].(string); img != "" {
			delete(og, "og:image")
			s.addImage(ctx, og, resolve(resp.Request.URL, img), userID)
		} else {
			dropImage(og)
		}
		return og, nil
	case strings.HasPrefix(mediaType, "image/"):
		og := map[string]any{}
		s.storeImage(ctx, og, resp, userID)
		return og, nil
	default:
		// A PDF, a video: nothing to show but the link itself.
		return map[string]any{}, nil
	}
}

// get fetches u through the guarded client, turning failures into the
// client's errors. A 2xx response is returned for the caller to close.
func (s *Service) get(ctx context.Context, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, mxerr.InvalidParam("url is not a valid URL")
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", accept)
	resp, err := s.client.Do(req)
	switch {
	case netguard.IsBlocked(err):
		return nil, errBlocked
	case err != nil:
		s.cfg.Log.Info("URL preview: fetch failed", "url", u, "err", err)
		return nil, errFetch("Could not fetch the URL")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, errFetch("The URL answered HTTP %d", resp.StatusCode)
	}
	return resp, nil
}

// addImage fetches a page's og:image and stores it, adding og:image
// (mxc://) to og; a failure leaves the preview without an image, since
// the title and description are still worth showing.
func (s *Service) addImage(ctx context.Context, og map[string]any, imgURL *url.URL, userID string) {
	if s.cfg.StoreImage == nil || imgURL == nil {
		dropImage(og)
		return
	}
	resp, err := s.get(ctx, imgURL.String(), "image/*")
	if err != nil {
		dropImage(og)
		return
	}
	defer resp.Body.Close()
	s.storeImage(ctx, og, resp, userID)
}

// storeImage stores an image response through the media repository.
func (s *Service) storeImage(ctx context.Context, og map[string]any, resp *http.Response, userID string) {
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if s.cfg.StoreImage == nil || !strings.HasPrefix(ctype, "image/") || resp.ContentLength > MaxImage {
		dropImage(og)
		return
	}
	body := &countingReader{r: netguard.LimitBody(resp.Body, MaxImage)}
	head := &headBuffer{max: 64 << 10}
	mxc, err := s.cfg.StoreImage(ctx, userID, ctype, io.TeeReader(body, head))
	if err != nil {
		s.cfg.Log.Info("URL preview: storing the image", "url", resp.Request.URL.String(), "err", err)
		dropImage(og)
		return
	}
	og["og:image"] = mxc
	og["og:image:type"] = ctype
	og["matrix:image:size"] = body.n
	// The image's own dimensions, as Synapse gives them, from its header.
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(head.buf)); err == nil {
		og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
	}
}

// headBuffer keeps the first max bytes written to it: an image's header.
type headBuffer struct {
	buf []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// dropImage removes the image properties of a preview that has no image.
func dropImage(og map[string]any) {
	for k := range og {
		if strings.HasPrefix(k, "og:image") {
			delete(og, k)
		}
	}
}

// resolve makes a page's (possibly relative) image reference absolute;
// only http and https images are fetched.
func resolve(base *url.URL, ref string) *url.URL {
	u, err := base.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil
	}
	return u
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
