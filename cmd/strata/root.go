package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// errDamaged is returned by a command that found damage it was asked to look for
// (dump-log --verify); it exits with code 2.
var errDamaged = errors.New("damage found")

// errFlag marks a flag cobra could not parse.
var errFlag = errors.New("bad flag")

// exitCode: 0 success, 1 a request the cluster refused (or another
// failure), 2 bad usage (errUsage, a flag that does not parse) or damage
// found by dump-log --verify.
func exitCode(err error) int {
	if errors.Is(err, errDamaged) || errors.Is(err, errUsage) || errors.Is(err, errFlag) {
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
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", errFlag, err) })
	var g globalOptions
	g.addFlags(root)
	_ = &g // client commands take &g
	root.AddCommand(
		newDumpLogCmd(),
		newServerCmd(),
		newDevCmd(),
		newTopicsCmd(&g),
		newClusterCmd(&g),
		newElectLeadersCmd(&g),
		newReassignCmd(&g),
		newConsumeCmd(&g),
		newGroupsCmd(&g),
		newProduceCmd(&g),
		newPerfCmd(&g),
		newHealthCmd(&g),
	)
	return root
}
