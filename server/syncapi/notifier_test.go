package syncapi

import (
	"context"
	"testing"
	"time"
)

// A notification that lands between computing a response and waiting is
// not lost: Wait returns at once.
func TestNotifyBeforeWait(t *testing.T) {
	n := NewNotifier(10)
	n.Notify(11, []string{"@a:x"})
	if !n.Wait(context.Background(), "@a:x", 10, time.Hour) {
		t.Fatal("missed a notification that came before the wait")
	}
	// Up to date: waits until woken.
	done := make(chan bool)
	go func() { done <- n.Wait(context.Background(), "@a:x", 11, time.Hour) }()
	time.Sleep(10 * time.Millisecond)
	n.Notify(12, []string{"@b:x"}) // someone else
	select {
	case <-done:
		t.Fatal("woken by another user's event")
	case <-time.After(20 * time.Millisecond):
	}
	n.Notify(13, []string{"@a:x"})
	if !<-done {
		t.Fatal("not woken")
	}
	if n.Latest() != 13 {
		t.Fatalf("latest %d", n.Latest())
	}
}

func TestWaitTimesOut(t *testing.T) {
	n := NewNotifier(0)
	if n.Wait(context.Background(), "@a:x", 0, 5*time.Millisecond) {
		t.Fatal("woken with nothing new")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n.Wait(ctx, "@a:x", 0, time.Hour) {
		t.Fatal("woken by a cancelled context")
	}
}

func TestParseToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want uint64
	}{
		{"s5", true, 5}, {"s0", true, 0}, {"s5_7", true, 5}, {"s11", false, 0},
		{"", false, 0}, {"5", false, 0}, {"sx", false, 0}, {"t1_2", false, 0}, {"s-1", false, 0},
	} {
		tok, err := ParseToken(tc.in, 10)
		if (err == nil) != tc.ok || err == nil && tok.Pos != tc.want {
			t.Errorf("ParseToken(%q) = %v, %v", tc.in, tok, err)
		}
	}
}
