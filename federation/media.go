package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"

	"hearth/server/mxerr"
)

// RemoteMedia is media fetched from its origin server: its bytes, to be
// read once and closed, and what the origin said of them.
type RemoteMedia struct {
	ContentType string
	UploadName  string // from Content-Disposition; "" when none
	Body        io.ReadCloser
}

// maxMediaMetadata bounds the JSON first part of a federation media answer.
const maxMediaMetadata = 64 << 10

// maxMediaRedirects bounds the redirects followed from a Location part.
const maxMediaRedirects = 5

// errTooLarge is the spec's answer for remote content over our limit.
var errTooLarge = &mxerr.Error{Status: http.StatusBadGateway, Code: "M_TOO_LARGE", Message: "Remote media is too large"}

// FetchMedia fetches mxc://origin/mediaID from its origin, in the order
// the spec gives: the authenticated federation endpoint (following a
// Location part), then, for a server that does not know it, the
// deprecated /_matrix/media/v3/download with allow_remote=false. Content
// declared larger than maxSize is refused; the caller still bounds what
// it reads, as a length need not be declared. Failures are Matrix errors: 404 M_NOT_FOUND, 504
// M_NOT_YET_UPLOADED, 502 M_TOO_LARGE, or 502 for an origin that could not
// be asked.
func (s *Service) FetchMedia(ctx context.Context, origin, mediaID string, maxSize int64) (*RemoteMedia, error) {
	if _, _, _, err := parseServerName(origin); err != nil || mediaID == "" {
		return nil, mxerr.NotFound("Media not found")
	}
	id := url.PathEscape(mediaID)
	resp, err := s.mediaGet(ctx, origin, "/_matrix/federation/v1/media/download/"+id+"?timeout_ms=20000")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return s.readMultipart(ctx, origin, resp, maxSize)
	}
	if ferr := responseError(resp); !unrecognized(ferr) {
		return nil, mediaError(ferr, origin)
	}
	// An older server: the deprecated endpoint, which it must not answer
	// with anyone else's media.
	resp, err = s.mediaGet(ctx, origin, "/_matrix/media/v3/download/"+url.PathEscape(origin)+"/"+id+"?allow_remote=false&timeout_ms=20000")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, mediaError(responseError(resp), origin)
	}
	return plainMedia(resp, maxSize)
}

// mediaGet sends a signed GET to origin and returns the response, whose
// body the caller closes.
func (s *Service) mediaGet(ctx context.Context, origin, uri string) (*http.Response, error) {
	req, err := s.client.NewRequest(ctx, "GET", origin, uri, nil)
	if err != nil {
		return nil, mxerr.NotFound("Media not found")
	}
	resp, err := s.client.http.Do(req)
	if err != nil {
		return nil, &unreachable{server: origin, cause: err}
	}
	return resp, nil
}

// responseError reads a failed response's Matrix error and closes it.
func responseError(resp *http.Response) *Error {
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	var m struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxMediaMetadata))
	if json.Unmarshal(raw, &m) == nil {
		e.Code, e.Message = m.Errcode, m.Error
	}
	return e
}

// unrecognized reports whether a server answered that it does not know
// the endpoint: 404 or 405 M_UNRECOGNIZED, or a 404 or 405 with no Matrix
// error at all (a proxy in front of an old server).
func unrecognized(e *Error) bool {
	return (e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed) &&
		(e.Code == "M_UNRECOGNIZED" || e.Code == "")
}

// mediaError is what our client is told of the origin's refusal.
func mediaError(e *Error, origin string) error {
	switch {
	case e.Status == http.StatusNotFound:
		return mxerr.NotFound("Media not found")
	case e.Code == "M_NOT_YET_UPLOADED":
		return &mxerr.Error{Status: http.StatusGatewayTimeout, Code: e.Code, Message: "Media has not been uploaded yet"}
	case e.Code == "M_TOO_LARGE":
		return errTooLarge
	}
	return &unreachable{server: origin, cause: e}
}

// readMultipart reads the spec's two-part answer: JSON metadata, then the
// bytes or a Location to fetch them from.
func (s *Service) readMultipart(ctx context.Context, origin string, resp *http.Response, maxSize int64) (*RemoteMedia, error) {
	bad := func(why string) (*RemoteMedia, error) {
		resp.Body.Close()
		return nil, &unreachable{server: origin, cause: errors.New("media answer: " + why)}
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return bad("not multipart/mixed")
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return bad("no metadata part")
	}
	var md map[string]any
	raw, err := io.ReadAll(io.LimitReader(meta, maxMediaMetadata+1))
	if err != nil || len(raw) > maxMediaMetadata || json.Unmarshal(raw, &md) != nil {
		return bad("metadata is not a JSON object")
	}
	part, err := mr.NextPart()
	if err != nil {
		return bad("no content part")
	}
	if loc := part.Header.Get("Location"); loc != "" {
		resp.Body.Close()
		return s.fetchLocation(ctx, origin, loc, maxSize)
	}
	ctype := part.Header.Get("Content-Type")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return &RemoteMedia{ContentType: ctype, UploadName: fileName(part.Header.Get("Content-Disposition")),
		Body: &partBody{Reader: part, Closer: resp.Body}}, nil
}

type partBody struct {
	io.Reader
	io.Closer
}

// fetchLocation fetches the bytes a Location part points to: any https or
// http URL, unsigned, through the same address guard, redirects followed.
func (s *Service) fetchLocation(ctx context.Context, origin, loc string, maxSize int64) (*RemoteMedia, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, &unreachable{server: origin, cause: fmt.Errorf("media answer: bad Location %q", loc)}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return nil, &unreachable{server: origin, cause: err}
	}
	resp, err := s.client.redirecting.Do(req)
	if err != nil {
		return nil, &unreachable{server: origin, cause: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, mediaError(responseError(resp), origin)
	}
	return plainMedia(resp, maxSize)
}

// plainMedia is a plain download answer: the body is the content.
func plainMedia(resp *http.Response, maxSize int64) (*RemoteMedia, error) {
	if resp.ContentLength > maxSize {
		resp.Body.Close()
		return nil, errTooLarge
	}
	ctype := resp.Header.Get("Content-Type")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return &RemoteMedia{ContentType: ctype, UploadName: fileName(resp.Header.Get("Content-Disposition")),
		Body: resp.Body}, nil
}

// fileName returns the file name of a Content-Disposition, or "".
func fileName(disposition string) string {
	if disposition == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(disposition)
	if err != nil {
		return ""
	}
	return params["filename"]
}
