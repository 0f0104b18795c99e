package broker

import "errors"

// Errors of the broker's data path. Each maps to one Strata error code at the
// gRPC edge; Retriable says whether a client should retry (after a metadata
// refresh for the leadership errors). Compare with errors.Is.
var (
	// ErrNotLeaderOrFollower: this broker does not lead the partition (or, for
	// a follower fetch, does not host it in that role).
	ErrNotLeaderOrFollower = errors.New("broker: not the leader or follower for this partition")
	// ErrFencedLeaderEpoch: the request's leader epoch is older than ours.
	ErrFencedLeaderEpoch = errors.New("broker: fenced leader epoch")
	// ErrUnknownLeaderEpoch: the request's leader epoch is newer than ours
	// (our metadata is behind).
	ErrUnknownLeaderEpoch = errors.New("broker: unknown leader epoch")
	// ErrNotEnoughReplicas: acks=all and the ISR is smaller than
	// min.insync.replicas; nothing was appended.
	ErrNotEnoughReplicas = errors.New("broker: not enough in-sync replicas")
	// ErrNotEnoughReplicasAfterAppend: the records were appended but the ISR
	// shrank below min.insync.replicas before they were replicated.
	ErrNotEnoughReplicasAfterAppend = errors.New("broker: not enough in-sync replicas after append")
	// ErrInvalidRequiredAcks: acks other than 0, 1 or -1 (all).
	ErrInvalidRequiredAcks = errors.New("broker: invalid required acks")
	// ErrOffsetNotAvailable: a leader new in its epoch has not yet learned a
	// high watermark that reaches the start of its epoch, so the one it has
	// may be older than its predecessor's: it answers no HW-bounded offset
	// until then (Kafka's OFFSET_NOT_AVAILABLE).
	ErrOffsetNotAvailable = errors.New("broker: the new leader's high watermark is not known yet")
	// ErrStaleState: a partition state older than the one the replica has.
	ErrStaleState = errors.New("broker: stale partition state")
)

// Retriable reports whether a client may retry a request that failed with err.
func Retriable(err error) bool {
	switch {
	case errors.Is(err, ErrNotLeaderOrFollower), errors.Is(err, ErrFencedLeaderEpoch),
		errors.Is(err, ErrUnknownLeaderEpoch), errors.Is(err, ErrNotEnoughReplicas),
		errors.Is(err, ErrNotEnoughReplicasAfterAppend), errors.Is(err, ErrOffsetNotAvailable):
		return true
	}
	return false
}
