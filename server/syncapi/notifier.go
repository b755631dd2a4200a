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
// user has become durable. Waiting costs a channel and a goroutine, never
// a polling loop.
type Notifier struct {
	mu     sync.Mutex // guards latest and users
	latest uint64
	users  map[string]*userSignal
}

type userSignal struct {
	pos uint64        // newest position that concerned the user
	ch  chan struct{} // closed (and replaced) when pos moves
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
	for _, u := range users {
		sig := n.users[u]
		if sig == nil {
			// Nobody waits: remember the position so that a sync that
			// computed its answer before this and then waits returns at once.
			n.users[u] = &userSignal{pos: pos, ch: make(chan struct{})}
			continue
		}
		sig.pos = max(sig.pos, pos)
		close(sig.ch)
		sig.ch = make(chan struct{})
	}
}

// Wait blocks until something after since concerns userID, the timeout
// passes or ctx ends. It reports whether it was woken.
func (n *Notifier) Wait(ctx context.Context, userID string, since uint64, timeout time.Duration) bool {
	n.mu.Lock()
	sig := n.users[userID]
	if sig == nil {
		sig = &userSignal{ch: make(chan struct{})}
		n.users[userID] = sig
	}
	if sig.pos > since {
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
