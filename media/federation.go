package media

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"os"

	"hearth/server/httpx"
)

// FederationRoutes are the federation content repository (spec v1.11),
// served under /_matrix/federation to other servers, X-Matrix signed.
// They serve our own media only: a server asks the origin of mxc URIs.
func (s *Service) FederationRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v1/media/download/{mediaId}", Auth: httpx.ServerAuth, Handler: s.federationDownload},
		{Method: "GET", Path: "/v1/media/thumbnail/{mediaId}", Auth: httpx.ServerAuth, Handler: s.federationThumbnail},
	}
}

// federationDownload is GET /_matrix/federation/v1/media/download/{mediaId}.
func (s *Service) federationDownload(r *httpx.Request) (any, error) {
	f, err := s.file(r, s.cfg.ServerName, r.Param("mediaId"), "")
	if err != nil {
		return nil, err
	}
	return multipartFile(f)
}

// federationThumbnail is GET /_matrix/federation/v1/media/thumbnail/{mediaId}.
func (s *Service) federationThumbnail(r *httpx.Request) (any, error) {
	f, err := s.thumbnail(r, s.cfg.ServerName, r.Param("mediaId"))
	if err != nil {
		return nil, err
	}
	return multipartFile(f)
}

// multipartFile wraps a file in the spec's federation media answer: a
// multipart/mixed body of exactly two parts, the metadata as JSON (always
// {} for now), then the bytes with their Content-Type and
// Content-Disposition. The file streams from disk.
func multipartFile(f *httpx.File) (*httpx.Stream, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("open media: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("stat media: %w", err)
	}
	var head bytes.Buffer
	w := multipart.NewWriter(&head)
	meta, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err == nil {
		_, err = meta.Write([]byte("{}"))
	}
	if err == nil {
		h := textproto.MIMEHeader{"Content-Type": {f.ContentType}}
		if d := f.Header["Content-Disposition"]; d != "" {
			h.Set("Content-Disposition", d)
		}
		_, err = w.CreatePart(h)
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	tail := "\r\n--" + w.Boundary() + "--\r\n"
	return &httpx.Stream{
		ContentType: "multipart/mixed; boundary=" + w.Boundary(),
		Length:      int64(head.Len()) + st.Size() + int64(len(tail)),
		Body: &readCloser{
			Reader: io.MultiReader(bytes.NewReader(head.Bytes()), fh, bytes.NewReader([]byte(tail))),
			Closer: fh,
		},
	}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
