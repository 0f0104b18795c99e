package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startCPUProfile starts a CPU profile of this process into path (the perf
// commands' --cpuprofile) and returns the function that stops it and closes
// the file; with no path it profiles nothing. Profiling the client is how
// its per-byte costs were found (issue 5): the server has /debug/pprof/ for
// its side.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil // no --cpuprofile
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
