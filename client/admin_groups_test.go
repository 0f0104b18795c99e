package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TestAdminGroupsFake: ListGroups asks every broker and merges; the
// per-group requests go to the coordinator and follow it when it moves;
// per-group errors come back per group; reset offsets plans unless told to
// execute; commits from outside a group need it empty.
func TestAdminGroupsFake(t *testing.T) {
	f := newGroupFake(t, 2, 2)
	f.produce(0, 10)
	f.produce(1, 4)
	f.listed[0] = []*pb.GroupListing{{GroupId: "b", State: "stable", Members: 2, CoordinatorId: 1}}
	f.listed[1] = []*pb.GroupListing{{GroupId: "a", State: "empty", CoordinatorId: 2}, {GroupId: "b", State: "empty", CoordinatorId: 2}}
	a := client.NewAdmin(f.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ls, err := a.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Group != "a" || ls[1].Group != "b" || ls[1].Members != 2 || ls[1].CoordinatorID != 1 {
		t.Fatalf("ListGroups: %+v (want a, and b as the broker with its members lists it)", ls)
	}
	if _, err := a.ListGroups(ctx, "busy"); !isCode(err, pb.ErrorCode_INVALID_REQUEST) {
		t.Fatalf("ListGroups of a bad state: %v", err)
	}

	tp0, tp1 := client.TopicPartition{Topic: "t", Partition: 0}, client.TopicPartition{Topic: "t", Partition: 1}
	if err := a.CommitGroupOffsets(ctx, "g", map[client.TopicPartition]int64{tp0: 3, tp1: 1}); err != nil {
		t.Fatal(err)
	}
	// The coordinator moves: the next requests find it again.
	f.mu.Lock()
	f.coord = 1
	f.mu.Unlock()
	offs, err := a.FetchGroupOffsets(ctx, "g", tp0)
	if err != nil || offs[tp0].Offset != 3 {
		t.Fatalf("FetchGroupOffsets after the coordinator moved: %v %v", offs, err)
	}
	ds, err := a.DescribeGroups(ctx, "g", "nope")
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Err != nil || len(ds[0].Offsets) != 2 || ds[0].Offsets[0].Lag != 7 || ds[0].CoordinatorID != 2 {
		t.Fatalf("describe g: %+v", ds[0])
	}
	if !errors.Is(ds[1].Err, client.ErrGroupIDNotFound) {
		t.Fatalf("describe of an unknown group: %v", ds[1].Err)
	}

	plan, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "g", To: client.ResetShiftBy(-2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 2 || plan[0].Previous != 3 || plan[0].New != 1 || plan[1].New != 0 {
		t.Fatalf("reset plan: %+v", plan)
	}
	if off, _ := f.committed("g", tp0); off != 3 {
		t.Fatalf("a plan changed the offset to %d", off)
	}
	if _, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "g", To: client.ResetToLatest(), Execute: true}); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.committed("g", tp0); off != 10 {
		t.Fatalf("executed reset to latest: %d, want 10", off)
	}
	if _, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "g"}); !isCode(err, pb.ErrorCode_INVALID_REQUEST) {
		t.Fatalf("reset without a target: %v", err)
	}
	if _, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "g", To: client.ResetToEarliest(), Topics: []string{"t"},
		Partitions: []client.TopicPartition{tp0}}); !isCode(err, pb.ErrorCode_INVALID_REQUEST) {
		t.Fatalf("reset naming a topic whole and one of its partitions: %v", err)
	}

	// A member makes the group non-empty: commits from outside and resets
	// are refused.
	g := newGroupConsumer(t, f.client(t), client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}})
	eventually(t, "joined", func() bool { return g.MemberEpoch() > 0 })
	if err := a.CommitGroupOffsets(ctx, "g", map[client.TopicPartition]int64{tp0: 0}); !errors.Is(err, client.ErrNonEmptyGroup) {
		t.Fatalf("commit from outside a group with members: %v", err)
	}
	if _, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "g", To: client.ResetToEarliest()}); !errors.Is(err, client.ErrNonEmptyGroup) {
		t.Fatalf("reset of a group with members: %v", err)
	}
	g.Close()

	res, err := a.DeleteGroups(ctx, "g", "nope")
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !errors.Is(res[1].Err, client.ErrGroupIDNotFound) {
		t.Fatalf("DeleteGroups: %+v", res)
	}
	if _, err := a.DeleteGroups(ctx, ""); !errors.Is(err, client.ErrInvalidGroupID) {
		t.Fatalf("DeleteGroups of an empty id: %v", err)
	}
}

func isCode(err error, code pb.ErrorCode) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}
