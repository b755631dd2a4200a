// Package syncapi serves /sync: sync tokens, the notifier that wakes
// long-polling clients, and the assembly of sync responses from the
// store's indexes.
package syncapi

import (
	"context"
	"sync"
	"time"
)

// Notifier wakes long-polling syncs when something that concerns their
// user has happened: a durable event or change at a stream position, or
// an in-memory one such as typing. Waiting costs a channel and a
// goroutine, never a polling loop.
type Notifier struct {
	mu     sync.Mutex // guards latest and users
	latest uint64
	users  map[string]*userSignal
}

type userSignal struct {
	gen uint64        // counts the wake-ups that concerned the user
	ch  chan struct{} // closed (and replaced) at each wake-up
}

// NewNotifier returns a notifier that starts at position latest.
func NewNotifier(latest uint64) *Notifier {
	return &Notifier{latest: latest, users: map[string]*userSignal{}}
}

// Latest returns the newest durable position.
func (n *Notifier) Latest() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.latest
}

// Notify records that position pos is durable and concerns users, and
// wakes their waiting syncs.
func (n *Notifier) Notify(pos uint64, users []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latest = max(n.latest, pos)
	n.wakeLocked(users)
}

// Wake wakes users' syncs for a change that has no stream position.
func (n *Notifier) Wake(users []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakeLocked(users)
}

func (n *Notifier) wakeLocked(users []string) {
	for _, u := range users {
		sig := n.users[u]
		if sig == nil {
			continue // nobody has synced: nothing to wake or to remember
		}
		sig.gen++
		close(sig.ch)
		sig.ch = make(chan struct{})
	}
}

// Gen returns userID's wake-up count. A sync reads it before it computes
// its answer and waits with it, so that nothing happening in between is
// missed.
func (n *Notifier) Gen(userID string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	sig := n.users[userID]
	if sig == nil {
		sig = &userSignal{ch: make(chan struct{})}
		n.users[userID] = sig
	}
	return sig.gen
}

// Wait blocks until userID is woken after gen, the timeout passes or ctx
// ends. It reports whether it was woken.
func (n *Notifier) Wait(ctx context.Context, userID string, gen uint64, timeout time.Duration) bool {
	n.mu.Lock()
	sig := n.users[userID]
	if sig == nil {
		sig = &userSignal{ch: make(chan struct{})}
		n.users[userID] = sig
	}
	if sig.gen != gen {
		n.mu.Unlock()
		return true
	}
	ch := sig.ch
	n.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
