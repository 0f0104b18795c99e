// Package broker will hold the BrokerService gRPC server, partition leader and
// follower state, replica fetchers, delayed operations and the metadata
// follower (DESIGN.md §1, §4). It is built by the broker issue; until then it
// holds no code.
package broker
