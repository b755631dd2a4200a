package media

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"hearth/media/thumbnail"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// thumbSlots bounds concurrent thumbnail generation: each decode holds a
// whole image (about 18 MB for 12 megapixels), and a Pi has little memory.
var thumbSlots = make(chan struct{}, 2)

// thumbnailRoute serves GET .../thumbnail/{serverName}/{mediaId}.
func (s *Service) thumbnailRoute(r *httpx.Request) (any, error) {
	return s.thumbnail(r, r.Param("serverName"), r.Param("mediaId"))
}

// thumbnail returns a thumbnail of origin's media ID at the size the
// request's query asks: the smallest standard size of the method at
// least as large as asked, or exactly the size asked when none is,
// generated once and kept on disk beside the content.
func (s *Service) thumbnail(r *httpx.Request, origin, mediaID string) (*httpx.File, error) {
	w, errW := strconv.Atoi(r.Query("width"))
	h, errH := strconv.Atoi(r.Query("height"))
	if errW != nil || errH != nil || w <= 0 || h <= 0 {
		return nil, mxerr.InvalidParam("width and height must be positive integers")
	}
	method := thumbnail.Method(r.Query("method"))
	if method == "" {
		method = thumbnail.Scale
	}
	if method != thumbnail.Crop && method != thumbnail.Scale {
		return nil, mxerr.InvalidParam("method must be crop or scale")
	}
	size, ok := thumbnail.Pick(thumbnail.Standard, w, h, method)
	if !ok {
		// Bounded so a client cannot make the server store arbitrary sizes.
		size = thumbnail.Size{W: min(w, 4096), H: min(h, 4096), Method: method}
	}
	m, err := s.lookup(r.Context(), origin, mediaID)
	if err != nil {
		return nil, err
	}
	if f := s.cachedThumb(m, size); f != nil {
		return f, nil
	}
	thumbSlots <- struct{}{}
	out, ctype, err := s.makeThumbnail(s.path(m.SHA256), m.ContentType, size)
	<-thumbSlots
	switch {
	case errors.Is(err, thumbnail.ErrNotImage):
		return nil, mxerr.Unknown("Cannot make a thumbnail of this media")
	case errors.Is(err, thumbnail.ErrTooManyPixels):
		return nil, mxerr.TooLarge("Image is too large to thumbnail")
	case err != nil:
		return nil, err
	}
	return s.keepThumb(m, size, out, ctype)
}

// thumbBase is where a thumbnail of m's content is kept, less the
// extension.
func (s *Service) thumbBase(m *store.Media, size thumbnail.Size) string {
	return filepath.Join(s.dir, "thumbs", m.SHA256[0:2], m.SHA256[2:4], m.SHA256, size.String())
}

// cachedThumb returns the kept thumbnail of m at size, or nil.
func (s *Service) cachedThumb(m *store.Media, size thumbnail.Size) *httpx.File {
	base := s.thumbBase(m, size)
	for _, ext := range []string{".jpg", ".png"} {
		if _, err := os.Stat(base + ext); err == nil {
			return s.thumbFile(base+ext, ext, m.SHA256, size)
		}
	}
	return nil
}

// keepThumb writes a thumbnail beside the content, by the same
// temp-then-rename rule, so a crash leaves no torn thumbnail under its
// name.
func (s *Service) keepThumb(m *store.Media, size thumbnail.Size, out []byte, ctype string) (*httpx.File, error) {
	base := s.thumbBase(m, size)
	ext := ".jpg"
	if ctype == "image/png" {
		ext = ".png"
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return nil, fmt.Errorf("create thumbnail directory: %w", err)
	}
	if _, _, err := s.writeContentTo(bytes.NewReader(out), base+ext); err != nil {
		return nil, err
	}
	return s.thumbFile(base+ext, ext, m.SHA256, size), nil
}

// pregenerate makes the standard thumbnails of an uploaded image in the
// background (one decode for all sizes, at most thumbSlots at once), so
// the first client to show it waits for nothing. Failures are only
// logged: the thumbnail endpoint makes what is missing on demand.
func (s *Service) pregenerate(m *store.Media) {
	if !strings.HasPrefix(m.ContentType, "image/") || m.ContentType == "image/svg+xml" {
		return
	}
	s.background.Add(1)
	go func() { // ends when the thumbnails are written; Close waits for it
		defer s.background.Done()
		thumbSlots <- struct{}{}
		defer func() { <-thumbSlots }()
		f, err := os.Open(s.path(m.SHA256))
		if err != nil {
			return
		}
		defer f.Close()
		thumbs, err := thumbnail.MakeAll(f, m.ContentType, thumbnail.Standard, thumbnail.DefaultMaxPixels)
		if err != nil {
			s.log.Debug("no standard thumbnails", "media", m.ID, "err", err)
			return
		}
		for _, t := range thumbs {
			if _, err := s.keepThumb(m, t.Size, t.Data, t.ContentType); err != nil {
				s.log.Warn("keep thumbnail", "media", m.ID, "err", err)
			}
		}
	}()
}

func (s *Service) makeThumbnail(path, ctype string, size thumbnail.Size) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("open media: %w", err)
	}
	defer f.Close()
	return thumbnail.Make(f, ctype, size, thumbnail.DefaultMaxPixels)
}

func (s *Service) thumbFile(path, ext, sum string, size thumbnail.Size) *httpx.File {
	ctype := "image/jpeg"
	if ext == ".png" {
		ctype = "image/png"
	}
	return &httpx.File{Path: path, ContentType: ctype, ETag: sum + "-" + size.String(),
		Header: serveHeaders(ctype, "thumbnail"+ext)}
}
