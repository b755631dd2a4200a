// Package processtest runs the real hearth binary as an operator would:
// built once per test run with CGO_ENABLED=0, started as a subprocess on a
// loopback port with its own data directory, spoken to over HTTP, stopped
// with signals, and driven through its command line.
//
// Its tests cover what in-process tests cannot: SIGKILL in the middle of a
// write storm, SIGTERM with a request in flight, the bbolt file lock held
// by another process, flags and HEARTH_* variables, and what the binary
// prints on stderr. The package holds only tests and benchmarks; run the
// benchmarks for start-up time, idle RSS and login latency:
//
//	go test -run '^$' -bench . ./server/processtest/
package processtest
