package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TestListOffsetsSubscribeDeleteRecords covers the smaller RPCs end to end:
// ListOffsets (earliest, latest, by timestamp), Subscribe streaming records
// as they arrive, OffsetForLeaderEpoch, and DeleteRecords raising the log
// start on the leader and, through replication, on the followers.
func TestListOffsetsSubscribeDeleteRecords(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	c.CreateTopic("ev", 1, 2, nil)
	leader := c.leaderOf("ev", 0, 2)
	var follower int32 = 101
	if leader == 101 {
		follower = 102
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client(leader)
	md, err := cl.Metadata(ctx, &pb.MetadataRequest{})
	if err != nil || len(md.ControllerAddresses) != len(c.Ctrl.Addrs) || md.ControllerAddresses[0] != c.Ctrl.Addrs[0] || len(md.Brokers) != 2 {
		t.Fatalf("metadata: %v %v", err, md)
	}

	stream, err := cl.Subscribe(ctx, &pb.SubscribeRequest{Decode: true, Topics: []*pb.SubscribeTopic{{Topic: "ev",
		Partitions: []*pb.SubscribePartition{{Partition: 0, StartOffset: 0, CurrentLeaderEpoch: -1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if r, err := produce(ctx, cl, "ev", 0, -1, batchOf(t, fmt.Sprint("e", i))); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("produce: %v %v", err, r)
		}
	}
	var got []string
	for len(got) < 10 {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("subscribe after %d records: %v", len(got), err)
		}
		for _, r := range msg.Topics[0].Partitions[0].DecodedRecords {
			if r.Offset != int64(len(got)) {
				t.Fatalf("subscription record at offset %d, want %d", r.Offset, len(got))
			}
			got = append(got, string(r.Value))
		}
	}
	if got[9] != "e9" {
		t.Fatalf("subscription read %v", got)
	}

	list := func(ts int64) *pb.ListOffsetsPartitionResult {
		resp, err := cl.ListOffsets(ctx, &pb.ListOffsetsRequest{ReplicaId: -1, Topics: []*pb.ListOffsetsTopic{{Topic: "ev",
			Partitions: []*pb.ListOffsetsPartition{{Partition: 0, CurrentLeaderEpoch: -1, TimestampMs: ts}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	if r := list(-2); r.Offset != 0 {
		t.Fatalf("earliest %v", r)
	}
	if r := list(-1); r.Offset != 10 {
		t.Fatalf("latest %v", r)
	}
	if r := list(0); r.Offset != 0 || r.TimestampMs < 0 {
		t.Fatalf("by timestamp 0: %v", r)
	}
	if r := list(time.Now().Add(time.Hour).UnixMilli()); r.Offset != -1 {
		t.Fatalf("by a future timestamp: %v", r)
	}
	if r := list(-7); r.ErrorCode == pb.ErrorCode_NONE {
		t.Fatalf("timestamp -7 accepted: %v", r)
	}

	oe, err := cl.OffsetForLeaderEpoch(ctx, &pb.OffsetForLeaderEpochRequest{ReplicaId: follower, Topics: []*pb.OffsetForLeaderEpochTopic{{Topic: "ev",
		Partitions: []*pb.OffsetForLeaderEpochPartition{{Partition: 0, CurrentLeaderEpoch: -1, LeaderEpoch: 0}}}}})
	if err != nil || oe.Topics[0].Partitions[0].ErrorCode != pb.ErrorCode_NONE || oe.Topics[0].Partitions[0].EndOffset != 10 {
		t.Fatalf("offset for leader epoch: %v %v", err, oe)
	}

	del := func(off int64) *pb.DeleteRecordsPartitionResult {
		resp, err := cl.DeleteRecords(ctx, &pb.DeleteRecordsRequest{Topics: []*pb.DeleteRecordsTopic{{Topic: "ev",
			Partitions: []*pb.DeleteRecordsPartition{{Partition: 0, Offset: off}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	if r := del(11); r.ErrorCode != pb.ErrorCode_OFFSET_OUT_OF_RANGE {
		t.Fatalf("delete past the HW: %v", r)
	}
	if r := del(4); r.ErrorCode != pb.ErrorCode_NONE || r.LowWatermark != 4 {
		t.Fatalf("delete records before 4: %v", r)
	}
	if r := list(-2); r.Offset != 4 {
		t.Fatalf("earliest after delete records: %v", r)
	}
	// The follower adopts the leader's log start from its next fetches.
	if r, err := produce(ctx, cl, "ev", 0, -1, batchOf(t, "after")); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("produce: %v %v", err, r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Broker(follower).LogStartOffset("ev", 0) != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("follower log start %d, want 4", c.Broker(follower).LogStartOffset("ev", 0))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FetchStream answers each request as Fetch answers it, in order, on one
// stream; a request Fetch refuses ends the stream with Fetch's status.
func TestFetchStreamAnswersAsFetch(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	c.CreateTopic("fs", 1, 1, nil)
	leader := c.leaderOf("fs", 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client(leader)
	for i := range 3 {
		if r, err := produce(ctx, cl, "fs", 0, -1, batchOf(t, fmt.Sprint("f", i))); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("produce: %v %v", err, r)
		}
	}
	req := func(offset int64, maxWait int32) *pb.FetchRequest {
		return &pb.FetchRequest{ReplicaId: -1, MaxWaitMs: maxWait, MinBytes: 1, Topics: []*pb.FetchTopic{{Topic: "fs",
			Partitions: []*pb.FetchPartition{{Partition: 0, FetchOffset: offset, CurrentLeaderEpoch: -1, PartitionMaxBytes: 1 << 20}}}}}
	}
	stream, err := cl.FetchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, offset := range []int64{0, 1, 2, 0} {
		want, err := cl.Fetch(ctx, req(offset, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(req(offset, 0)); err != nil {
			t.Fatal(err)
		}
		got, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) || len(got.Topics[0].Partitions[0].Records) == 0 {
			t.Fatalf("offset %d: stream answered %v, Fetch %v", offset, got, want)
		}
	}
	// A long poll on the stream ends when a record arrives.
	if err := stream.Send(req(3, 10_000)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if r, err := produce(ctx, cl, "fs", 0, -1, batchOf(t, "late")); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("produce: %v %v", err, r)
	}
	if got, err := stream.Recv(); err != nil || len(got.Topics[0].Partitions[0].Records) == 0 {
		t.Fatalf("long poll on the stream: %v %v", err, got)
	}
	bad := req(0, 0)
	bad.MaxBytes = -1
	if _, err := cl.Fetch(ctx, bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Fetch of a negative max_bytes: %v", err)
	}
	if err := stream.Send(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream after a negative max_bytes: %v, want InvalidArgument", err)
	}
}
