// Command strata is Strata's one binary: servers, the admin CLI and the tools.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(exitCode(err))
	}
}
