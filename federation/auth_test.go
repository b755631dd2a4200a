package federation

import (
	"strings"
	"testing"
)

func TestParseXMatrix(t *testing.T) {
	cases := []struct {
		header string
		want   xMatrix
		ok     bool
	}{
		{`X-Matrix origin="a.org",destination="b.org",key="ed25519:k",sig="c2ln"`, xMatrix{"a.org", "b.org", "ed25519:k", "c2ln"}, true},
		{`X-Matrix origin=a.org,key="ed25519:k",sig="c2ln"`, xMatrix{"a.org", "", "ed25519:k", "c2ln"}, true},
		{`x-matrix origin="a.org", key="ed25519:k", sig="c2ln"`, xMatrix{"a.org", "", "ed25519:k", "c2ln"}, true},
		{`X-Matrix origin="a\"b",key="ed25519:k",sig="s"`, xMatrix{`a"b`, "", "ed25519:k", "s"}, true},
		{`X-Matrix origin="a.org",key="ed25519:k"`, xMatrix{}, false},
		{`X-Matrix origin="a.org,key="ed25519:k",sig="s`, xMatrix{}, false},
		{`Bearer abc`, xMatrix{}, false},
		{``, xMatrix{}, false},
	}
	for _, tc := range cases {
		got, ok := parseXMatrix(tc.header)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseXMatrix(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

// Every federation request's Authorization header is a peer's bytes:
// parsing never panics, and what parses says the same when written back
// out quoted (RFC 9110's quoted-string, as a peer would send it).
func FuzzParseXMatrix(f *testing.F) {
	f.Add(`X-Matrix origin="a.org",destination="b.org",key="ed25519:k",sig="c2ln"`)
	f.Add(`X-Matrix origin=a.org,key="ed25519:k",sig="c2ln"`)
	f.Add(`x-matrix origin="a\"b", key="ed25519:k", sig="s"`)
	f.Add(`X-Matrix origin="a.org,key="ed25519:k",sig="s`)
	f.Fuzz(func(t *testing.T, h string) {
		x, ok := parseXMatrix(h)
		if !ok {
			return
		}
		quote := func(v string) string {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
		again := "X-Matrix origin=" + quote(x.origin) + ",destination=" + quote(x.destination) + ",key=" + quote(x.key) + ",sig=" + quote(x.sig)
		if y, ok := parseXMatrix(again); !ok || y != x {
			t.Fatalf("%q parses as %+v; written back as %q it parses as %+v, %v", h, x, again, y, ok)
		}
	})
}
