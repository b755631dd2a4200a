package httpx

import (
	"math"
	"sync"
	"time"
)

// Limiter is a set of token buckets keyed by a string (a client IP, a user
// ID). A nil or disabled Limiter allows everything.
type Limiter struct {
	rate  float64 // tokens added per second
	burst float64 // bucket size

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets is when Allow starts dropping full buckets, so a stream of
// distinct keys cannot grow the map without bound.
const maxBuckets = 10_000

// NewLimiter returns a limiter allowing burst requests at once per key and
// perSecond on average after that. perSecond 0 returns nil (no limit).
func NewLimiter(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	return &Limiter{rate: perSecond, burst: float64(burst), buckets: map[string]*bucket{}}
}

// Allow takes one token from key's bucket. When the bucket is empty it
// returns false and how long until a token is available.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// pruneLocked forgets buckets that have refilled: forgetting them changes
// nothing. l.mu must be held.
func (l *Limiter) pruneLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
