package client

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"

	"google.golang.org/grpc"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Admin manages topics, configs, leadership, reassignments and records
// (Kafka's AdminClient). Topic, config, election and reassignment requests go
// to the active controller (Client.Controller follows NOT_CONTROLLER);
// ListOffsets and DeleteRecords go to the partition leaders; topic
// descriptions come from the brokers' metadata.
//
// Errors come in two layers, as in the protocol:
//
//   - the returned error is a request-level failure (no broker or controller
//     answered, a malformed request, the context ended): nothing was done;
//   - each item of a multi-item request carries its own Err (an *Error or
//     nil): some items may succeed while others fail.
//
// An Admin is safe for concurrent use. It borrows the Client: closing the
// Client ends it.
type Admin struct {
	c *Client
}

// NewAdmin returns an Admin over c.
func NewAdmin(c *Client) *Admin { return &Admin{c: c} }

// callController makes one ControllerService call (a method expression such
// as pb.ControllerServiceClient.CreateTopics) at the active controller,
// through Client.Controller, and answers its response.
func callController[Req, Resp any](ctx context.Context, a *Admin,
	call func(pb.ControllerServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	var resp Resp
	err := a.c.Controller(ctx, func(ctx context.Context, cl pb.ControllerServiceClient) (err error) {
		resp, err = call(cl, ctx, req)
		return err
	})
	return resp, err
}

// Client is the Client the Admin uses.
func (a *Admin) Client() *Client { return a.c }

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// name is "topic-partition", as in messages. (Not String: the result types
// embed TopicPartition and would print as their partition alone.)
func (tp TopicPartition) name() string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

// TopicResult is the outcome of a per-topic request for one topic.
type TopicResult struct {
	Name string
	Err  error // nil: done
}

// invalid is a request-level INVALID_REQUEST error: the request was not sent.
func invalid(format string, args ...any) error {
	return &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf(format, args...)}
}

// itemError is the error of one item's result code with a hint of what to do.
func itemError(code pb.ErrorCode, msg string) error {
	if code == pb.ErrorCode_NONE {
		return nil
	}
	if h := hints[code]; h != "" {
		msg += "; " + h
	}
	return codeError(code, msg)
}

// hints say what to do about an item's error; they end the error message.
var hints = map[pb.ErrorCode]string{
	pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION:     "check the name (strata topics list) and the partition count (strata topics describe)",
	pb.ErrorCode_TOPIC_ALREADY_EXISTS:           "pick another name, or delete the topic first",
	pb.ErrorCode_INVALID_PARTITIONS:             "give a positive partition count larger than the current one (partitions never shrink)",
	pb.ErrorCode_INVALID_REPLICATION_FACTOR:     "give a replication factor between 1 and the number of live brokers (strata cluster describe)",
	pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT:     "name distinct, registered brokers (strata cluster describe), the same number for every partition",
	pb.ErrorCode_INVALID_CONFIG:                 "check the key and value (strata topics describe shows the keys and their current values)",
	pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS:    "nothing to cancel",
	pb.ErrorCode_REASSIGNMENT_IN_PROGRESS:       "wait for the reassignment to finish (strata reassign verify) or cancel it",
	pb.ErrorCode_PREFERRED_LEADER_NOT_AVAILABLE: "the preferred replica is offline or out of the ISR; retry once it has caught up",
	pb.ErrorCode_ELIGIBLE_LEADERS_NOT_AVAILABLE: "every eligible replica is offline; start a replica's broker (or use an unclean election and accept data loss)",
	pb.ErrorCode_OFFSET_OUT_OF_RANGE:            "the offset is past the high watermark; list the offsets first",
	pb.ErrorCode_POLICY_VIOLATION:               "the cluster's policy refuses this request",
}

// topicIDString formats a 16-byte topic id as a UUID (as raftfsm prints it).
func topicIDString(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// groupByTopic turns partitions into the per-topic lists the protocol wants,
// topics in first-seen order.
func groupByTopic(tps []TopicPartition) []*pb.TopicPartitions {
	var out []*pb.TopicPartitions
	idx := map[string]int{}
	for _, tp := range tps {
		i, ok := idx[tp.Topic]
		if !ok {
			i = len(out)
			idx[tp.Topic] = i
			out = append(out, &pb.TopicPartitions{Topic: tp.Topic})
		}
		out[i].Partitions = append(out[i].Partitions, tp.Partition)
	}
	return out
}

// sortTopicPartitions orders by topic, then partition.
func sortTopicPartitions[T any](s []T, key func(T) TopicPartition) {
	sort.SliceStable(s, func(i, j int) bool {
		a, b := key(s[i]), key(s[j])
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
}
