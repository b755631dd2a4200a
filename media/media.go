// Package media is the content repository: uploads (plain and
// asynchronous), downloads on the authenticated and legacy endpoints, the
// limits, and the seam through which remote media arrives.
//
// Content lives on local disk under <data>/media, one file per distinct
// content, named by its SHA-256 in two levels of shard directories
// (ab/cd/abcd…), so identical uploads share one file. A file is written
// under tmp/, fsynced and renamed into place: a crash never leaves a
// half-written file under a content name. What is known about each media
// ID (uploader, type, name, size, hash) is in the store.
package media

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"hearth/server/mxerr"
	"hearth/store"
)

// DefaultMaxUploadSize is the upload limit when none is configured: a
// phone video fits, and a Pi's disk does not fill from one request.
const DefaultMaxUploadSize = 50 << 20

// unusedExpiry is how long a media ID from POST /create waits for its
// content: the spec's recommended 24 hours, for poor connections.
const unusedExpiry = 24 * time.Hour

// Config configures the repository.
type Config struct {
	ServerName string
	DataDir    string // the server's data directory; media goes in <DataDir>/media
	// MaxUploadSize bounds one upload in bytes; 0 means
	// DefaultMaxUploadSize.
	MaxUploadSize int64
	// Quota bounds the bytes one user may upload in total; 0 means none.
	Quota int64
	// Legacy serves local media on the deprecated unauthenticated
	// /_matrix/media/{v3,r0} download endpoints, for clients that cannot
	// authenticate media requests.
	Legacy bool
}

// RemoteFetcher fetches media of another server (origin) over federation,
// stores its content with Service.StoreRemote and returns its record. It
// returns a *mxerr.Error (404 M_NOT_FOUND, 502, 504) when the media cannot
// be had. The server wires it to the federation client. The repository
// calls it only for media it has not cached, once per media ID however
// many downloads wait.
type RemoteFetcher func(ctx context.Context, origin, mediaID string) (*store.Media, error)

// Service is the content repository.
type Service struct {
	cfg *Config
	st  *store.Store
	dir string // <data>/media
	log *slog.Logger
	// Remote fetches remote media; nil answers 404 M_NOT_FOUND for all of
	// it. Set before the server starts serving.
	Remote RemoteFetcher

	background sync.WaitGroup // thumbnails being made after upload, remote fetches

	fetchMu  sync.Mutex             // guards fetching
	fetching map[string]*remoteCall // remote media being fetched, by origin 0x00 media ID
}

// Close waits for thumbnails being made and remote media being fetched in
// the background.
func (s *Service) Close() { s.background.Wait() }

// New opens the repository's directory, removing uploads a crash left
// unfinished in its tmp directory.
func New(cfg Config, st *store.Store, log *slog.Logger) (*Service, error) {
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = DefaultMaxUploadSize
	}
	s := &Service{cfg: &cfg, st: st, dir: filepath.Join(cfg.DataDir, "media"), log: log,
		fetching: map[string]*remoteCall{}}
	tmp := filepath.Join(s.dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("clear unfinished uploads: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create media directory: %w", err)
	}
	return s, nil
}

// MaxUploadSize is the largest upload accepted, in bytes.
func (s *Service) MaxUploadSize() int64 { return s.cfg.MaxUploadSize }

// path is where the content with hex digest sum lives.
func (s *Service) path(sum string) string {
	return filepath.Join(s.dir, sum[0:2], sum[2:4], sum)
}

// Path returns the file holding m's content (for thumbnailing).
func (s *Service) Path(m *store.Media) string { return s.path(m.SHA256) }

// errQuota is the spec's answer to a user over their quota: 403, not 429,
// which clients would retry.
var errQuota = mxerr.Forbidden("Media upload quota exceeded")

// writeContent stores the bytes of r and returns their digest and size.
// The bytes go to a temporary file, which is fsynced and then renamed to
// its content name; identical content already stored is kept and the new
// copy dropped. allow, when set, vets the size before the file is renamed
// into place (the quota).
func (s *Service) writeContent(r io.Reader, allow func(size int64) error) (sum string, size int64, err error) {
	return s.write(r, allow, "")
}

// writeContentTo is writeContent to a given file name (thumbnails).
func (s *Service) writeContentTo(r io.Reader, name string) (sum string, size int64, err error) {
	return s.write(r, nil, name)
}

// write stores r under name, or under its content name when name is "".
func (s *Service) write(r io.Reader, allow func(size int64) error, name string) (sum string, size int64, err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("create upload file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		if _, ok := mxerr.As(err); ok {
			return "", 0, err
		}
		return "", 0, mxerr.Unknown("Upload interrupted")
	}
	if allow != nil {
		if err := allow(size); err != nil {
			return "", 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("close upload: %w", err)
	}
	f = nil
	sum = hex.EncodeToString(h.Sum(nil))
	final := s.path(sum)
	if name != "" {
		final = name
	}
	if _, err := os.Stat(final); err == nil {
		return sum, size, nil // de-duplicated: the same bytes are already stored
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return "", 0, fmt.Errorf("create shard directory: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", 0, fmt.Errorf("move upload into place: %w", err)
	}
	tmp = ""
	syncDir(filepath.Dir(final)) // the rename itself survives a power cut
	return sum, size, nil
}

// syncDir fsyncs a directory, best effort: some filesystems refuse it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// checkQuota fails with errQuota when userID cannot store size more bytes.
func (s *Service) checkQuota(userID string, size int64) error {
	if s.cfg.Quota <= 0 {
		return nil
	}
	var used uint64
	_ = s.st.View(func(tx *store.Tx) error { used = tx.MediaUsage(userID); return nil })
	if int64(used)+size > s.cfg.Quota {
		return errQuota
	}
	return nil
}

// StoreRemote stores content fetched from a remote server under origin's
// media ID and returns its record. The remote fetcher calls it.
func (s *Service) StoreRemote(origin, mediaID, contentType, uploadName string, r io.Reader) (*store.Media, error) {
	// Checked before the file is moved into place, so that a cut-off
	// copy of oversized content is never kept.
	tooLarge := func(size int64) error {
		if size > s.cfg.MaxUploadSize {
			// The spec's answer for remote content too large to serve.
			return &mxerr.Error{Status: http.StatusBadGateway, Code: "M_TOO_LARGE",
				Message: fmt.Sprintf("Remote media is larger than %d bytes", s.cfg.MaxUploadSize)}
		}
		return nil
	}
	sum, size, err := s.writeContent(io.LimitReader(r, s.cfg.MaxUploadSize+1), tooLarge)
	if e, ok := mxerr.As(err); ok && e.Status == http.StatusBadRequest {
		// The origin stopped sending mid-way: its failure, not the client's.
		return nil, &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "Could not fetch remote media"}
	}
	if err != nil {
		return nil, err
	}
	m := &store.Media{ID: mediaID, Origin: origin, ContentType: contentType, UploadName: uploadName,
		Size: size, SHA256: sum, Created: time.Now().UnixMilli()}
	return m, s.st.Update(func(tx *store.Tx) error { return tx.PutMedia(m) })
}

// StoreLocal stores content the server itself fetched for userID (a URL
// preview's image) as local media, outside the user's quota, and returns
// its mxc URI.
func (s *Service) StoreLocal(userID, contentType, uploadName string, r io.Reader) (string, error) {
	sum, size, err := s.writeContent(io.LimitReader(r, s.cfg.MaxUploadSize+1), nil)
	if err != nil {
		return "", err
	}
	if size > s.cfg.MaxUploadSize {
		return "", mxerr.TooLarge("Content is larger than %d bytes", s.cfg.MaxUploadSize)
	}
	m := &store.Media{ID: newMediaID(), Origin: s.cfg.ServerName, Uploader: userID, ContentType: contentType,
		UploadName: uploadName, Size: size, SHA256: sum, Created: time.Now().UnixMilli()}
	if err := s.st.Update(func(tx *store.Tx) error { return tx.PutMedia(m) }); err != nil {
		return "", err
	}
	s.pregenerate(m)
	return "mxc://" + s.cfg.ServerName + "/" + m.ID, nil
}

// newMediaID returns a fresh media ID: 24 letters and digits, as the spec
// allows ([A-Za-z0-9_-]), about 143 bits.
func newMediaID() string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// lookup finds the record of origin's media ID for a download: local
// media from the store, remote media from the cache or its origin.
func (s *Service) lookup(ctx context.Context, origin, id string) (*store.Media, error) {
	if origin != s.cfg.ServerName {
		return s.remote(ctx, origin, id)
	}
	var m *store.Media
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		m, err = tx.Media(origin, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("Media not found")
	}
	if err != nil {
		return nil, err
	}
	if m.Pending() {
		if time.Now().UnixMilli() >= m.UnusedExpiresAt {
			return nil, mxerr.NotFound("Media not found")
		}
		return nil, errNotYetUploaded
	}
	return m, nil
}

// errNotYetUploaded answers a download of an asynchronous upload whose
// content has not arrived. The spec lets the server answer before
// timeout_ms ends; clients retry.
var errNotYetUploaded = &mxerr.Error{Status: http.StatusGatewayTimeout, Code: "M_NOT_YET_UPLOADED",
	Message: "Media has not been uploaded yet"}

// errCannotOverwrite answers a second upload to an asynchronous media ID.
var errCannotOverwrite = &mxerr.Error{Status: http.StatusConflict, Code: "M_CANNOT_OVERWRITE_MEDIA",
	Message: "Media ID already has content"}
