package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/stratalog/strata/broker"
)

// addGroupFlags adds the group coordinator's settings to `strata server`.
func addGroupFlags(f *pflag.FlagSet, g *broker.GroupConfig) {
	f.Int32Var(&g.OffsetsTopicPartitions, "offsets-topic-partitions", 50,
		"partitions of __consumer_offsets when it is created (offsets.topic.num.partitions)")
	f.Int32Var(&g.OffsetsTopicReplicationFactor, "offsets-topic-replication-factor", 3,
		"replication factor of __consumer_offsets, capped at the brokers registered when it is created")
	f.DurationVar(&g.SessionTimeout, "group-session-timeout", 45*time.Second,
		"remove a group member after this long without a heartbeat (group.consumer.session.timeout.ms)")
	f.DurationVar(&g.HeartbeatInterval, "group-heartbeat-interval", 5*time.Second,
		"heartbeat interval told to stable group members (group.consumer.heartbeat.interval.ms)")
	f.DurationVar(&g.OffsetsRetention, "offsets-retention", 7*24*time.Hour,
		"keep an empty group's committed offsets this long (offsets.retention.ms)")
}
