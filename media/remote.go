package media

import (
	"context"
	"errors"
	"net/http"
	"time"

	"hearth/server/mxerr"
	"hearth/store"
)

// remoteFetchTimeout bounds one fetch of remote media, however many
// downloads wait for it.
const remoteFetchTimeout = 2 * time.Minute

// remoteCall is one fetch of remote media, shared by every download of
// it that arrives while it runs.
type remoteCall struct {
	done chan struct{} // closed when m and err are set
	m    *store.Media
	err  error
}

// remote returns the record of another server's media: from the store
// once fetched, else fetched from its origin through Remote, once however
// many ask at the same time. A waiting download gives up when its own
// request ends; the fetch goes on for the others and the cache.
func (s *Service) remote(ctx context.Context, origin, id string) (*store.Media, error) {
	var m *store.Media
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		m, err = tx.Media(origin, id)
		return err
	})
	if err == nil && !m.Pending() {
		return m, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if s.Remote == nil {
		return nil, mxerr.NotFound("Remote media is not available on this server")
	}
	key := origin + "\x00" + id
	s.fetchMu.Lock()
	c, running := s.fetching[key]
	if !running {
		c = &remoteCall{done: make(chan struct{})}
		s.fetching[key] = c
		s.background.Add(1)
		go func() { // one fetch; ends with it, bounded by remoteFetchTimeout
			defer s.background.Done()
			fctx, cancel := context.WithTimeout(context.Background(), remoteFetchTimeout)
			defer cancel()
			c.m, c.err = s.Remote(fctx, origin, id)
			if errors.Is(c.err, context.DeadlineExceeded) {
				c.err = &mxerr.Error{Status: http.StatusGatewayTimeout, Code: "M_UNKNOWN", Message: "Timed out fetching remote media"}
			}
			s.fetchMu.Lock()
			delete(s.fetching, key)
			s.fetchMu.Unlock()
			close(c.done)
		}()
	}
	s.fetchMu.Unlock()
	select {
	case <-c.done:
		return c.m, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
