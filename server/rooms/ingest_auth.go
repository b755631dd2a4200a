package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"hearth/server/pdu"
	"hearth/store"
)

// checkAuthEvents is step 3: ev's auth events must be known (their auth
// chain is fetched from origin if not), none of them rejected, and ev must
// pass the auth rules against them.
func (s *Service) checkAuthEvents(ctx context.Context, origin string, room *store.Room, ev *pdu.Event) error {
	auth, missing, err := s.authEventsOf(room, ev)
	if err != nil {
		return err
	}
	if len(missing) > 0 && s.remote != nil {
		chain, err := s.remote.EventAuth(ctx, origin, room.RoomID, ev.ID())
		if err != nil {
			return fmt.Errorf("fetching the auth chain of %s from %s: %w", ev.ID(), origin, err)
		}
		if _, err := s.storeOutliers(ctx, room, s.parseAll(ctx, room, chain)); err != nil {
			return err
		}
		if auth, missing, err = s.authEventsOf(room, ev); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return s.reject(room, ev, fmt.Errorf("auth events %v are unknown", missing))
	}
	if err := pdu.Allowed(ev, auth); err != nil {
		return s.reject(room, ev, fmt.Errorf("not allowed by its auth events: %w", err))
	}
	return nil
}

// createEventID returns the ID of a room's create event where the room
// ID derives from it (room version 12), else "".
func createEventID(room *store.Room) string {
	if !pdu.DomainlessRoomIDs(room.Version) {
		return ""
	}
	return "$" + strings.TrimPrefix(room.RoomID, "!")
}

// authEventsOf returns ev's auth events that are stored (with the create
// event, which room version 12 leaves out of auth_events), and the IDs of
// those that are not. A rejected auth event rejects ev.
func (s *Service) authEventsOf(room *store.Room, ev *pdu.Event) (auth []*pdu.Event, missing []string, err error) {
	ids := ev.AuthEventIDs()
	if c := createEventID(room); c != "" && ev.ID() != c {
		ids = append(ids, c)
	}
	var rejected string
	err = s.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			l, err := s.load(tx, room.Version, id)
			if errors.Is(err, store.ErrNotFound) {
				missing = append(missing, id)
				continue
			}
			if err != nil {
				return err
			}
			if l.rec.Flags&store.FlagRejected != 0 {
				rejected = id
			}
			auth = append(auth, l.ev)
		}
		return nil
	})
	if err == nil && rejected != "" {
		err = s.reject(room, ev, fmt.Errorf("auth event %s was rejected", rejected))
	}
	return auth, missing, err
}

// parseAll parses and verifies remote events, dropping (and logging) those
// that fail.
func (s *Service) parseAll(ctx context.Context, room *store.Room, raws []json.RawMessage) []*pdu.Event {
	s.prefetchKeys(ctx, raws)
	out := make([]*pdu.Event, 0, len(raws))
	for _, raw := range raws {
		ev, err := s.parseRemote(ctx, room.Version, raw)
		if err != nil {
			s.log.Info("federation: dropped a fetched event", "room", room.RoomID, "err", err)
			continue
		}
		if ev.RoomID() != room.RoomID {
			s.log.Info("federation: dropped a fetched event of another room", "room", room.RoomID, "event_id", ev.ID())
			continue
		}
		out = append(out, ev)
	}
	return out
}

// storeOutliers stores events learnt outside the timeline (an auth chain,
// a room's state), each checked against its own auth events, in an order
// where every event comes after its auth events. An event whose auth
// events are missing or rejected, or that fails them, is stored rejected.
// It returns the positions of the events it accepted or already had.
func (s *Service) storeOutliers(ctx context.Context, room *store.Room, evs []*pdu.Event) (map[string]uint64, error) {
	pending := map[string]*pdu.Event{}
	for _, e := range evs {
		pending[e.ID()] = e
	}
	accepted := map[string]*pdu.Event{}
	rejected := map[string]bool{}
	// known returns an auth event from this batch or the store; ok false
	// if it is unknown, err set if it is rejected.
	known := func(tx *store.Tx, id string) (*pdu.Event, bool, error) {
		if e := accepted[id]; e != nil {
			return e, true, nil
		}
		if rejected[id] {
			return nil, true, fmt.Errorf("auth event %s was rejected", id)
		}
		if _, waiting := pending[id]; waiting {
			return nil, false, nil
		}
		l, err := s.load(tx, room.Version, id)
		if err != nil {
			return nil, true, fmt.Errorf("auth event %s is unknown", id)
		}
		if l.rec.Flags&store.FlagRejected != 0 {
			return nil, true, fmt.Errorf("auth event %s was rejected", id)
		}
		return l.ev, true, nil
	}
	positions := map[string]uint64{}
	err := s.store.Update(func(tx *store.Tx) error {
		clear(accepted)
		clear(rejected)
		todo := maps.Clone(pending)
		for len(todo) > 0 {
			progress := false
			for id, e := range todo {
				ids := e.AuthEventIDs()
				if c := createEventID(room); c != "" && id != c {
					ids = append(ids, c)
				}
				var auth []*pdu.Event
				var why error
				ready := true
				for _, a := range ids {
					ae, ok, err := known(tx, a)
					if !ok {
						ready = false
						break
					}
					if err != nil && why == nil {
						why = err
					}
					if ae != nil {
						auth = append(auth, ae)
					}
				}
				if !ready {
					continue
				}
				if why == nil {
					why = pdu.Allowed(e, auth)
				}
				if why != nil {
					s.log.Info("federation: fetched event rejected", "event_id", id, "room", room.RoomID, "why", why)
					rejected[id] = true
				} else {
					accepted[id] = e
				}
				delete(todo, id)
				progress = true
			}
			if !progress { // a cycle, or auth events that refer to each other
				for id := range todo {
					rejected[id] = true
				}
				break
			}
		}
		for id := range rejected {
			if _, err := tx.AddOutlier(room.NID, id, pending[id].JSON(), store.FlagRejected, 0); err != nil {
				return err
			}
		}
		for id, e := range accepted {
			pos, err := tx.AddOutlier(room.NID, id, e.JSON(), 0, 0)
			if err != nil {
				return err
			}
			positions[id] = pos
		}
		return nil
	})
	return positions, err
}

// prefetchKeys fetches, a few servers at a time, the signing keys that
// the signatures of raws name, so that verifying a large batch (a big
// room's state) does not wait on each server in turn.
func (s *Service) prefetchKeys(ctx context.Context, raws []json.RawMessage) {
	if s.keys == nil || len(raws) < 2 {
		return
	}
	type key struct{ server, id string }
	seen := map[key]bool{}
	var keys []key
	for _, raw := range raws {
		var ev struct {
			Signatures map[string]map[string]json.RawMessage `json:"signatures"`
		}
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		for server, sigs := range ev.Signatures {
			for id := range sigs {
				if k := (key{server, id}); !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	if len(keys) < 2 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	now := time.Now().UnixMilli()
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = s.keys(ctx, k.server, k.id, now) // cached for the checks that follow
		}()
	}
	wg.Wait()
}
