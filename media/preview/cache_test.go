package preview

import (
	"fmt"
	"testing"
	"time"
)

func TestCacheBoundedAndExpiring(t *testing.T) {
	c := newCache(3, time.Hour)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 5 {
		c.put(fmt.Sprint(i), map[string]any{"og:title": i}, t0.Add(time.Duration(i)*time.Minute))
	}
	if n := len(c.entries); n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	now := t0.Add(5 * time.Minute)
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(fmt.Sprint(i), now); ok != want {
			t.Errorf("entry %d cached = %v, want %v (the oldest go first)", i, ok, want)
		}
	}
	if _, ok := c.get("4", t0.Add(4*time.Minute+time.Hour)); ok {
		t.Error("an entry is served past its expiry")
	}
}
