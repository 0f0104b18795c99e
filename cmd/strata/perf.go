package main

import "github.com/spf13/cobra"

// newPerfCmd is the parent of the load generators (kafka-producer-perf-test
// and kafka-consumer-perf-test in one place).
func newPerfCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Measure throughput and latency against a cluster",
	}
	cmd.AddCommand(
		newPerfProduceCmd(g),
		newPerfConsumeCmd(g),
		newPerfEndToEndCmd(g),
	)
	return cmd
}
