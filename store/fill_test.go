package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Events arrive at the end of the stream, in commits of one (a lone
// sender) or a few (group commit). bbolt's default split, half and half,
// would leave every full page of events half empty; an append-only bucket
// fills its pages instead. (bbolt keeps at least two keys on the new page
// of a split, so one-event commits of 600-byte events still get four to a
// page rather than six: 63%, not 47%. Batched commits fill them further.)
func TestEventPagesFill(t *testing.T) {
	for _, perCommit := range []int{1, 5} {
		t.Run(fmt.Sprintf("%d per commit", perCommit), func(t *testing.T) {
			const events, jsonLen = 1200, 600
			s, err := Open(t.TempDir(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var room *Room
			if err := s.Update(func(tx *Tx) (err error) {
				room, err = tx.CreateRoom("!fill:localhost", "12")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < events; i += perCommit {
				err := s.Update(func(tx *Tx) error {
					r, err := tx.RoomByNID(room.NID)
					if err != nil {
						return err
					}
					for j := i; j < i+perCommit; j++ {
						id := fmt.Sprintf("$event%08d", j)
						js := fmt.Sprintf(`{"event_id":%q,"body":"%s"}`, id, strings.Repeat("x", jsonLen-36))
						if _, err := tx.AppendEvent(r, &NewEvent{EventID: id, JSON: []byte(js), Depth: int64(j + 1), Type: "m.room.message"}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			err = s.View(func(tx *Tx) error {
				st := tx.btx.Bucket(bucketEvents).Stats()
				if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.6 {
					t.Errorf("event pages are %.0f%% full", 100*fill)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
