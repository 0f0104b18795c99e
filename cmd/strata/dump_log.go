package main

import "github.com/spf13/cobra"

func newDumpLogCmd() *cobra.Command {
	return &cobra.Command{Use: "dump-log PATH", Short: "Print a .log, .index or .timeindex file (in progress)"}
}
