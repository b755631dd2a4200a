package server_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layers gives every package of the module its layer (DESIGN.md, "The
// shape"): a package may import only packages of a lower layer, so imports
// point one way, main → server → API areas → core → store. A new package
// must be given a layer here.
var layers = map[string]int{
	"hearth/store":           0,
	"hearth/server/mxerr":    0,
	"hearth/media/thumbnail": 0, // a pure image library: imports nothing of Hearth
	"hearth/server/httpx":    1,
	"hearth/server/accounts": 1,
	"hearth/server/pdu":      1,
	"hearth/server/filter":   1,
	"hearth/server/bench":    1, // a plain Client-Server API client: imports nothing of Hearth
	"hearth/server/netguard": 1, // the SSRF-guarded outbound HTTP client
	"hearth/server/rooms":    2,
	"hearth/server/keys":     2,
	"hearth/server/identity": 2, // the identity server client, through netguard
	"hearth/server/client":   3,
	"hearth/server/syncapi":  3,
	"hearth/server/backup":   3,
	"hearth/admin":           3,
	"hearth/media":           3,
	"hearth/media/preview":   3,
	"hearth/federation":      3,
	"hearth/server":          4,
	"hearth":                 5,
	// Test support sits above everything it starts.
	"hearth/store/storetest":    1,
	"hearth/server/servertest":  5,
	"hearth/server/processtest": 6,
	"hearth/server/e2ee":        6, // tests only (build tag goolm), with a real E2EE client
}

// onlyImportedBy names outside packages that a single package wraps.
var onlyImportedBy = map[string]string{
	"github.com/valyala/fasthttp":             "hearth/server/httpx",
	"github.com/matrix-org/gomatrixserverlib": "hearth/server/pdu",
	"github.com/disintegration/imaging":       "hearth/media/thumbnail",
}

func TestImportsPointOneWay(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := "hearth"
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		layer, known := layers[pkg]
		if !known {
			t.Errorf("package %s has no layer in layers_test.go", pkg)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			for outside, owner := range onlyImportedBy {
				if (ip == outside || strings.HasPrefix(ip, outside+"/")) && pkg != owner {
					t.Errorf("%s imports %s; only %s may", path, ip, owner)
				}
			}
			if ip != "hearth" && !strings.HasPrefix(ip, "hearth/") {
				continue
			}
			if l, ok := layers[ip]; ok && l >= layer {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", pkg, layer, ip, l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
