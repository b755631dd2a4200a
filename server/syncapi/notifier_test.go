package syncapi

import (
	"context"
	"testing"
	"time"
)

// A wake-up between reading the generation and waiting is not lost: Wait
// returns at once.
func TestWakeBeforeWait(t *testing.T) {
	n := NewNotifier(10)
	gen := n.Gen("@a:x")
	n.Notify(11, []string{"@a:x"})
	if !n.Wait(context.Background(), "@a:x", gen, time.Hour) {
		t.Fatal("missed a wake-up that came before the wait")
	}
	gen = n.Gen("@a:x")
	done := make(chan bool)
	go func() { done <- n.Wait(context.Background(), "@a:x", gen, time.Hour) }()
	time.Sleep(10 * time.Millisecond)
	n.Notify(12, []string{"@b:x"}) // someone else
	select {
	case <-done:
		t.Fatal("woken by another user's event")
	case <-time.After(20 * time.Millisecond):
	}
	n.Wake([]string{"@a:x"}) // typing: no position
	if !<-done {
		t.Fatal("not woken")
	}
	if n.Latest() != 12 {
		t.Fatalf("latest %d", n.Latest())
	}
}

func TestWaitTimesOut(t *testing.T) {
	n := NewNotifier(0)
	if n.Wait(context.Background(), "@a:x", n.Gen("@a:x"), 5*time.Millisecond) {
		t.Fatal("woken with nothing new")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n.Wait(ctx, "@a:x", n.Gen("@a:x"), time.Hour) {
		t.Fatal("woken by a cancelled context")
	}
}

func TestParseToken(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ok     bool
		pos    uint64
		typing uint64
	}{
		{"s5", true, 5, 0}, {"s0", true, 0, 0}, {"s5_7", true, 5, 7}, {"s5_7_9", true, 5, 7}, {"s11", false, 0, 0},
		{"", false, 0, 0}, {"5", false, 0, 0}, {"sx", false, 0, 0}, {"t1_2", false, 0, 0}, {"s-1", false, 0, 0}, {"s5_x", false, 0, 0},
	} {
		tok, err := ParseToken(tc.in, 10)
		if (err == nil) != tc.ok || err == nil && (tok.Pos != tc.pos || tok.Typing != tc.typing) {
			t.Errorf("ParseToken(%q) = %+v, %v", tc.in, tok, err)
		}
	}
	if s := (Token{Pos: 3, Typing: 4, Presence: 5}).String(); s != "s3_4_5" {
		t.Errorf("String: %s", s)
	}
}
