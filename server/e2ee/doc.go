// Package e2ee holds no code, only the end-to-end encryption tests: a real
// Matrix client library (maunium.net/go/mautrix with its pure-Go olm
// implementation) talks to a real Hearth and does real cryptography. The
// tests need the build tag goolm and no cgo:
//
//	CGO_ENABLED=0 go test -tags goolm ./server/e2ee/
//
// Without the tag the package is empty, so `go vet ./...` and the plain
// test run stay free of the client library's cgo variant.
package e2ee
