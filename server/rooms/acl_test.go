package rooms

import "testing"

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"*", "matrix.org", true},
		{"*.evil.com", "a.evil.com", true},
		{"*.evil.com", "evil.com", false},
		{"evil.com", "EVIL.com", true},
		{"ev?l.com", "evil.com", true},
		{"ev?l.com", "eviil.com", false},
		{"1.2.3.*", "1.2.3.4", true},
		{"a.b", "aXb", false}, // . is literal
		{"[::1]", "[::1]", true},
	} {
		if got := globMatch(c.glob, c.name); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.glob, c.name, got, c.want)
		}
	}
}
