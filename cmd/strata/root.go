package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// errDamaged is returned by a command that found damage it was asked to look for
// (dump-log --verify); it exits with code 2, other failures with 1.
var errDamaged = errors.New("damage found")

func exitCode(err error) int {
	if errors.Is(err, errDamaged) {
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "strata",
		Short: "Strata: a replicated commit log with a Raft controller quorum",
		Long: `Strata is a distributed, replicated commit log in the family of Apache Kafka in KRaft mode.

This one binary runs servers and drives the cluster.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newDumpLogCmd(),
		newServerCmd(),
		newDevCmd(),
	)
	return root
}
