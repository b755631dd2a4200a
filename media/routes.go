package media

import (
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// Routes returns the routes served under /_matrix/media: uploads, and the
// deprecated unauthenticated downloads and config.
func (s *Service) Routes() []httpx.Route {
	upload := int(s.cfg.MaxUploadSize)
	return []httpx.Route{
		// Upload (the spec keeps these under /_matrix/media).
		{Method: "POST", Path: "/v3/upload", Auth: httpx.UserAuth, Handler: s.upload, MaxBody: upload, StreamBody: true},
		{Method: "POST", Path: "/v1/create", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.create)},
		{Method: "PUT", Path: "/v3/upload/{serverName}/{mediaId}", Auth: httpx.UserAuth, Handler: s.uploadTo, MaxBody: upload, StreamBody: true},

		// Deprecated unauthenticated endpoints (frozen unless Legacy).
		{Method: "GET", Path: "/v3/download/{serverName}/{mediaId}", Auth: httpx.NoAuth, Handler: s.legacyDownload},
		{Method: "GET", Path: "/v3/download/{serverName}/{mediaId}/{fileName}", Auth: httpx.NoAuth, Handler: s.legacyDownload},
		{Method: "GET", Path: "/v3/config", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.config)},
		{Method: "GET", Path: "/v3/thumbnail/{serverName}/{mediaId}", Auth: httpx.NoAuth, Handler: s.legacyThumbnail},
	}
}

// ClientRoutes returns the authenticated media routes served under
// /_matrix/client (spec v1.11).
func (s *Service) ClientRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v1/media/download/{serverName}/{mediaId}", Auth: httpx.UserAuth, Handler: s.download},
		{Method: "GET", Path: "/v1/media/download/{serverName}/{mediaId}/{fileName}", Auth: httpx.UserAuth, Handler: s.download},
		{Method: "GET", Path: "/v1/media/config", Auth: httpx.UserAuth, Handler: httpx.NoBody(s.config)},
		{Method: "GET", Path: "/v1/media/thumbnail/{serverName}/{mediaId}", Auth: httpx.UserAuth, Handler: s.thumbnailRoute},
	}
}

type configResp struct {
	UploadSize int64 `json:"m.upload.size"`
}

func (s *Service) config(r *httpx.Request) (*configResp, error) {
	return &configResp{UploadSize: s.cfg.MaxUploadSize}, nil
}

type uploadResp struct {
	ContentURI string `json:"content_uri"`
}

// upload is POST /upload: the body is the content.
func (s *Service) upload(r *httpx.Request) (any, error) {
	m := &store.Media{ID: newMediaID(), Origin: s.cfg.ServerName, Uploader: r.Principal.UserID,
		Created: time.Now().UnixMilli()}
	if err := s.receive(r, m); err != nil {
		return nil, err
	}
	if err := s.st.Update(func(tx *store.Tx) error { return tx.PutMedia(m) }); err != nil {
		return nil, err
	}
	s.pregenerate(m)
	return &uploadResp{ContentURI: "mxc://" + s.cfg.ServerName + "/" + m.ID}, nil
}

// receive streams the request body to disk and fills m's content fields.
func (s *Service) receive(r *httpx.Request, m *store.Media) error {
	if cl := r.ContentLength(); cl >= 0 {
		if err := s.checkQuota(m.Uploader, cl); err != nil {
			return err
		}
	}
	sum, size, err := s.writeContent(r.BodyReader(), func(size int64) error { return s.checkQuota(m.Uploader, size) })
	if err != nil {
		return err
	}
	m.SHA256, m.Size, m.UnusedExpiresAt = sum, size, 0
	m.ContentType = r.Header("Content-Type")
	if m.ContentType == "" {
		m.ContentType = "application/octet-stream"
	}
	if r.HasQuery("filename") {
		m.UploadName = r.Query("filename")
	}
	return nil
}

type createResp struct {
	ContentURI      string `json:"content_uri"`
	UnusedExpiresAt int64  `json:"unused_expires_at"`
}

// create is POST /v1/create: a media ID whose content comes later.
func (s *Service) create(r *httpx.Request) (*createResp, error) {
	now := time.Now()
	m := &store.Media{ID: newMediaID(), Origin: s.cfg.ServerName, Uploader: r.Principal.UserID,
		Created: now.UnixMilli(), UnusedExpiresAt: now.Add(unusedExpiry).UnixMilli()}
	if err := s.st.Update(func(tx *store.Tx) error { return tx.PutMedia(m) }); err != nil {
		return nil, err
	}
	return &createResp{ContentURI: "mxc://" + s.cfg.ServerName + "/" + m.ID, UnusedExpiresAt: m.UnusedExpiresAt}, nil
}

// uploadTo is PUT /upload/{serverName}/{mediaId}: the content of a media
// ID from /create, by its creator, once.
func (s *Service) uploadTo(r *httpx.Request) (any, error) {
	origin, id := r.Param("serverName"), r.Param("mediaId")
	pending, err := s.pendingUpload(origin, id, r.Principal.UserID)
	if err != nil {
		return nil, err
	}
	if err := s.receive(r, pending); err != nil {
		return nil, err
	}
	err = s.st.Update(func(tx *store.Tx) error {
		// A concurrent PUT may have won while this one was streaming.
		if cur, err := tx.Media(origin, id); err != nil || !cur.Pending() {
			return errCannotOverwrite
		}
		return tx.PutMedia(pending)
	})
	if err != nil {
		return nil, err
	}
	return httpx.Empty{}, nil
}

// pendingUpload returns the pending media record userID may upload to.
func (s *Service) pendingUpload(origin, id, userID string) (*store.Media, error) {
	if origin != s.cfg.ServerName {
		return nil, mxerr.NotFound("Media not found")
	}
	var m *store.Media
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		m, err = tx.Media(origin, id)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, mxerr.NotFound("Media not found")
	case err != nil:
		return nil, err
	case m.Uploader != userID:
		return nil, mxerr.Forbidden("Only the creator of a media ID may upload to it")
	case !m.Pending():
		return nil, errCannotOverwrite
	case time.Now().UnixMilli() >= m.UnusedExpiresAt:
		return nil, mxerr.NotFound("Media ID expired")
	}
	return m, nil
}

// legacyDownload is the deprecated unauthenticated download. Local media
// is frozen there (the spec's Matrix 1.12 freeze) unless the operator
// opted in; remote media is only ever served authenticated.
func (s *Service) legacyDownload(r *httpx.Request) (any, error) {
	if !s.cfg.Legacy || r.Param("serverName") != s.cfg.ServerName {
		return nil, mxerr.NotFound("Not found")
	}
	return s.download(r)
}

// legacyThumbnail is the deprecated unauthenticated thumbnail, frozen
// like legacyDownload.
func (s *Service) legacyThumbnail(r *httpx.Request) (any, error) {
	if !s.cfg.Legacy || r.Param("serverName") != s.cfg.ServerName {
		return nil, mxerr.NotFound("Not found")
	}
	return s.thumbnailRoute(r)
}

// download serves content. A file name in the path replaces the uploaded
// one in Content-Disposition.
func (s *Service) download(r *httpx.Request) (any, error) {
	return s.file(r, r.Param("serverName"), r.Param("mediaId"), r.Param("fileName"))
}

// file returns origin's media ID as a file to serve, named name or else
// by its upload name.
func (s *Service) file(r *httpx.Request, origin, mediaID, name string) (*httpx.File, error) {
	m, err := s.lookup(r.Context(), origin, mediaID)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = m.UploadName
	}
	return &httpx.File{
		Path:        s.path(m.SHA256),
		ContentType: m.ContentType,
		ETag:        m.SHA256,
		Header:      serveHeaders(m.ContentType, name),
	}, nil
}

// contentSecurityPolicy keeps served media from running anything in the
// server's origin, whatever a browser makes of it.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// serveHeaders are the headers of served content of type ctype, uploaded
// as name.
func serveHeaders(ctype, name string) map[string]string {
	return map[string]string{
		"Content-Security-Policy":      contentSecurityPolicy,
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
		"Content-Disposition":          disposition(ctype, name),
		// Content under a media ID never changes; private because the
		// authenticated endpoints answer per user.
		"Cache-Control": "private, max-age=31536000, immutable",
	}
}

// inlineTypes are exactly the types the spec lists under "Serving inline
// content". image/svg+xml is not one: an SVG can carry script.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true,
	"image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true,
	"audio/ogg": true, "audio/wave": true, "audio/wav": true, "audio/x-wav": true,
	"audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// disposition returns the Content-Disposition for content of type ctype
// named name ("" for none): inline only for the spec's safe types. A name
// that is not plain ASCII travels in RFC 6266's filename* (UTF-8,
// percent-encoded).
func disposition(ctype, name string) string {
	d := "attachment"
	if mt, _, err := mime.ParseMediaType(ctype); err == nil && inlineTypes[mt] {
		d = "inline"
	}
	if name == "" {
		return d
	}
	if isPlainASCII(name) {
		return d + `; filename="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return d + "; filename*=utf-8''" + encodeRFC5987(name)
}

func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// encodeRFC5987 percent-encodes every byte outside RFC 5987's attr-char.
func encodeRFC5987(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
