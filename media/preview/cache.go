package preview

import (
	"sync"
	"time"
)

// Previews are cached in memory: a link posted to a busy room is asked
// for by every member's client at once. An hour is Synapse's in-memory
// cache time; the size bound keeps a stream of distinct URLs from growing
// memory.
const (
	cacheSize = 1000
	cacheTTL  = time.Hour
)

// cache maps a URL to its preview until the entry expires. The values
// are shared between requests and never modified after put.
type cache struct {
	size int
	ttl  time.Duration

	mu      sync.Mutex // guards entries
	entries map[string]cacheEntry
}

type cacheEntry struct {
	og      map[string]any
	expires time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, entries: map[string]cacheEntry{}}
}

func (c *cache) get(url string, now time.Time) (map[string]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[url]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.og, true
}

// put stores a preview. A full cache first drops expired entries and,
// if that frees nothing, the entry closest to expiry (the oldest).
func (c *cache) put(url string, og map[string]any, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[url]; !ok && len(c.entries) >= c.size {
		var oldest string
		var oldestAt time.Time
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			} else if oldest == "" || e.expires.Before(oldestAt) {
				oldest, oldestAt = k, e.expires
			}
		}
		if len(c.entries) >= c.size {
			delete(c.entries, oldest)
		}
	}
	c.entries[url] = cacheEntry{og: og, expires: now.Add(c.ttl)}
}
