package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
