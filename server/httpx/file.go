package httpx

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"hearth/server/mxerr"
)

// File is a handler response that streams a file from disk instead of
// rendering JSON. The server answers conditional requests (If-None-Match
// against ETag) with 304 and a single byte range (Range: bytes=a-b) with
// 206, so video players can seek; the file is never read whole into
// memory.
type File struct {
	Path        string
	ContentType string
	// ETag is the entity tag without quotes; "" sends none. Content
	// served under one ETag must never change.
	ETag string
	// Header holds further response headers (Content-Disposition,
	// Content-Security-Policy, Cache-Control, ...).
	Header map[string]string
}

// writeFile serves f. A file that vanished is 404 M_NOT_FOUND.
func writeFile(ctx *fasthttp.RequestCtx, f *File) error {
	fh, err := os.Open(f.Path)
	if os.IsNotExist(err) {
		return mxerr.NotFound("File not found")
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", f.Path, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return fmt.Errorf("stat %s: %w", f.Path, err)
	}
	size := st.Size()
	h := &ctx.Response.Header
	for k, v := range f.Header {
		h.Set(k, v)
	}
	h.Set("Accept-Ranges", "bytes")
	if f.ETag != "" {
		etag := `"` + f.ETag + `"`
		h.Set("ETag", etag)
		if inm := string(ctx.Request.Header.Peek("If-None-Match")); inm != "" && etagMatches(inm, etag) {
			fh.Close()
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return nil
		}
	}
	ctx.SetContentType(f.ContentType)
	start, end, status := int64(0), size-1, fasthttp.StatusOK
	if rng := string(ctx.Request.Header.Peek("Range")); rng != "" && size > 0 {
		s, e, ok := parseRange(rng, size)
		if !ok {
			fh.Close()
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			ctx.SetStatusCode(fasthttp.StatusRequestedRangeNotSatisfiable)
			ctx.Response.ResetBody()
			return nil
		}
		start, end, status = s, e, fasthttp.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, e, size))
	}
	ctx.SetStatusCode(status)
	// fasthttp closes the stream (an io.Closer) once it is written.
	ctx.SetBodyStream(&sectionFile{io.NewSectionReader(fh, start, end-start+1), fh}, int(end-start+1))
	return nil
}

// sectionFile reads one section of a file and closes the file.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// parseRange parses a single-range "bytes=" header against a file of size
// bytes (size > 0). Several ranges are not supported and fail, which a
// client sees as 416 and retries without; no media client asks for more
// than one.
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		return max(size-n, 0), size - 1, true
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, false
	}
	end = size - 1
	if b != "" {
		e, err := strconv.ParseInt(b, 10, 64)
		if err != nil || e < start {
			return 0, 0, false
		}
		end = min(e, size-1)
	}
	return start, end, true
}

// Stream is a handler response whose body is read from Body, for content
// that is not one file on disk (a multipart answer around a file). Body
// is closed once written when it is an io.Closer, and also when the
// response is never written.
type Stream struct {
	ContentType string
	// Length is the body's size in bytes; -1 sends it chunked.
	Length int64
	Body   io.Reader
	// Header holds further response headers.
	Header map[string]string
}

func writeStream(ctx *fasthttp.RequestCtx, s *Stream) {
	for k, v := range s.Header {
		ctx.Response.Header.Set(k, v)
	}
	ctx.SetContentType(s.ContentType)
	ctx.SetStatusCode(fasthttp.StatusOK)
	// fasthttp closes the stream (an io.Closer) once it is written.
	ctx.SetBodyStream(s.Body, int(s.Length))
}
