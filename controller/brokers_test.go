package controller_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratalog/strata/controller"
	"github.com/stratalog/strata/controller/controllertest"
	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

func activeImage(t *testing.T, c *controllertest.Cluster) *raftfsm.Image {
	t.Helper()
	return c.Node(c.MustActive()).Image()
}

func codeOf(err error) pb.ErrorCode { return controller.ErrorCode(controller.FromGRPC(err)) }

// TestBrokerFencingMovesLeaders: a broker that stops heartbeating is fenced
// after its session; its leaderships move to other ISR members and it leaves
// the ISRs (never emptying one); it is unfenced when it comes back and can be
// made leader again with a preferred election.
func TestBrokerFencingMovesLeaders(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 500 * time.Millisecond})
	c.MustActive()
	bs := startBrokers(t, c, 3)
	createTopic(t, c, "orders", 6, 3)
	createTopic(t, c, "solo", 3, 1)
	img := activeImage(t, c)
	led := map[int32]int{}
	for _, p := range img.Topic("orders").Partitions() {
		led[p.Leader]++
		if len(p.ISR) != 3 {
			t.Fatalf("new partition ISR %v", p.ISR)
		}
	}
	if led[1] != 2 || led[2] != 2 || led[3] != 2 {
		t.Fatalf("leaders not spread evenly: %v", led)
	}

	bs[0].Stop() // broker 1 dies
	waitUntil(t, "broker 1 fenced", 5*time.Second, func() bool {
		b := activeImage(t, c).Broker(1)
		return b != nil && b.Fenced
	})
	img = activeImage(t, c)
	for i, p := range img.Topic("orders").Partitions() {
		if p.Leader == 1 || p.InISR(1) {
			t.Fatalf("orders-%d still has broker 1: leader %d isr %v", i, p.Leader, p.ISR)
		}
		if p.Leader == raftfsm.NoLeader {
			t.Fatalf("orders-%d leaderless", i)
		}
	}
	for i, p := range img.Topic("solo").Partitions() {
		if slices.Equal(p.Replicas, []int32{1}) {
			if p.Leader != raftfsm.NoLeader || !slices.Equal(p.ISR, []int32{1}) {
				t.Fatalf("solo-%d on broker 1: leader %d isr %v; want leaderless with ISR [1]", i, p.Leader, p.ISR)
			}
		}
	}

	// The broker comes back (same process, same epoch): unfenced once caught
	// up, and it leads its single-replica partitions again.
	bs[0].Start(50 * time.Millisecond)
	waitUntil(t, "broker 1 unfenced", 5*time.Second, func() bool {
		b := activeImage(t, c).Broker(1)
		return b != nil && !b.Fenced
	})
	waitUntil(t, "solo partitions led again", 5*time.Second, func() bool {
		for _, p := range activeImage(t, c).Topic("solo").Partitions() {
			if p.Leader == raftfsm.NoLeader {
				return false
			}
		}
		return true
	})

	// The leader of orders partitions whose preferred replica is 1 re-adds it
	// to the ISR (AlterPartition), then a preferred election moves leadership back.
	img = activeImage(t, c)
	tp := img.Topic("orders")
	ctx := ctxT(t, 10*time.Second)
	for i, p := range tp.Partitions() {
		if p.Replicas[0] != 1 {
			continue
		}
		leader := bs[p.Leader-1]
		var isr []*pb.IsrMember
		for _, r := range append(slices.Clone(p.ISR), 1) {
			isr = append(isr, &pb.IsrMember{BrokerId: r, BrokerEpoch: -1})
		}
		var resp *pb.AlterPartitionResponse
		err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			var err error
			resp, err = cl.AlterPartition(ctx, &pb.AlterPartitionRequest{BrokerId: leader.ID, BrokerEpoch: leader.Epoch(),
				Topics: []*pb.AlterPartitionTopic{{TopicId: tp.ID().Bytes(), Partitions: []*pb.AlterPartitionPartition{{
					Partition: int32(i), LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, NewIsr: isr}}}}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		pr := resp.GetTopics()[0].GetPartitions()[0]
		if pr.GetErrorCode() != pb.ErrorCode_NONE || len(pr.GetIsr()) != 3 || pr.GetPartitionEpoch() != p.PartitionEpoch+1 {
			t.Fatalf("AlterPartition orders-%d: %v", i, pr)
		}
		// The same request again is stale now.
		err = c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			var err error
			resp, err = cl.AlterPartition(ctx, &pb.AlterPartitionRequest{BrokerId: leader.ID, BrokerEpoch: leader.Epoch(),
				Topics: []*pb.AlterPartitionTopic{{TopicId: tp.ID().Bytes(), Partitions: []*pb.AlterPartitionPartition{{
					Partition: int32(i), LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, NewIsr: isr}}}}})
			return err
		})
		if err != nil || resp.GetTopics()[0].GetPartitions()[0].GetErrorCode() != pb.ErrorCode_INVALID_UPDATE_VERSION {
			t.Fatalf("stale AlterPartition: %v %v", err, resp)
		}
	}
	var er *pb.ElectLeadersResponse
	err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		er, err = cl.ElectLeaders(ctx, &pb.ElectLeadersRequest{ElectionType: pb.ElectionType_ELECTION_TYPE_PREFERRED})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range activeImage(t, c).Topic("orders").Partitions() {
		if p.Leader != p.Replicas[0] {
			t.Fatalf("after preferred election: leader %d, replicas %v (%v)", p.Leader, p.Replicas, er)
		}
	}
}

func TestBrokerRegistrationRules(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 400 * time.Millisecond})
	c.MustActive()
	ctx := ctxT(t, 10*time.Second)
	b1 := c.NewFakeBroker(1, "")
	e1, err := b1.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b1.Start(50 * time.Millisecond)
	defer b1.Stop()
	// A second process with the same id is refused while the session lives.
	imp := c.NewFakeBroker(1, "")
	if _, err := imp.Register(ctx); codeOf(err) != pb.ErrorCode_DUPLICATE_BROKER_REGISTRATION {
		t.Fatalf("duplicate registration: %v", err)
	}
	// A retry of the same incarnation with its epoch gets the same epoch.
	var resp *pb.RegisterBrokerResponse
	err = c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		resp, err = cl.RegisterBroker(ctx, &pb.RegisterBrokerRequest{BrokerId: 1, IncarnationId: b1.Incarnation, PreviousBrokerEpoch: e1,
			Listeners: []*pb.Listener{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9001}}})
		return err
	})
	if err != nil || resp.GetBrokerEpoch() != e1 {
		t.Fatalf("retry: %v epoch %d want %d", err, resp.GetBrokerEpoch(), e1)
	}
	// A heartbeat with a stale epoch is refused with the current one.
	err = c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		_, err := cl.BrokerHeartbeat(ctx, &pb.BrokerHeartbeatRequest{BrokerId: 1, BrokerEpoch: e1 - 1})
		return err
	})
	var ce *controller.Error
	if !errors.As(err, &ce) || ce.Code != pb.ErrorCode_STALE_BROKER_EPOCH || ce.CurrentEpoch != e1 {
		t.Fatalf("stale heartbeat: %v", err)
	}
	err = c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		_, err := cl.BrokerHeartbeat(ctx, &pb.BrokerHeartbeatRequest{BrokerId: 42, BrokerEpoch: 1})
		return err
	})
	if codeOf(err) != pb.ErrorCode_BROKER_ID_NOT_REGISTERED {
		t.Fatalf("unknown broker heartbeat: %v", err)
	}
	// Once the old process is dead (session expired), the new one registers
	// with a greater epoch.
	b1.Stop()
	waitUntil(t, "old session expired", 5*time.Second, func() bool { return activeImage(t, c).Broker(1).Fenced })
	e2, err := imp.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e2 <= e1 {
		t.Fatalf("new epoch %d not after %d", e2, e1)
	}
	if !bytes.Equal(activeImage(t, c).Broker(1).IncarnationID, imp.Incarnation) {
		t.Fatal("registration not replaced")
	}
}

func TestControlledShutdown(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 2 * time.Second})
	c.MustActive()
	bs := startBrokers(t, c, 3)
	createTopic(t, c, "t", 6, 2)
	bs[1].RequestShutdown()
	waitUntil(t, "controlled shutdown completes", 10*time.Second, func() bool {
		l := bs[1].Last()
		return l != nil && l.GetShouldShutDown()
	})
	img := activeImage(t, c)
	b := img.Broker(2)
	if !b.Fenced || !b.InControlledShutdown {
		t.Fatalf("broker 2 after controlled shutdown: fenced %v shutting down %v", b.Fenced, b.InControlledShutdown)
	}
	for i, p := range img.Topic("t").Partitions() {
		if p.Leader == 2 || p.Leader == raftfsm.NoLeader {
			t.Fatalf("t-%d: leader %d after broker 2 shut down (isr %v)", i, p.Leader, p.ISR)
		}
	}
}

// TestReassignment drives a reassignment with AlterPartition from the
// partition leader, as a broker would, and lists its progress.
func TestReassignment(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 2 * time.Second})
	c.MustActive()
	bs := startBrokers(t, c, 4)
	ctx := ctxT(t, 20*time.Second)
	var cr *pb.CreateTopicsResponse
	err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		cr, err = cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "r", NumPartitions: -1, ReplicationFactor: -1,
			Assignments: []*pb.ReplicaAssignment{{Partition: 0, BrokerIds: []int32{1, 2}}}}}})
		return err
	})
	if err != nil || cr.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE {
		t.Fatalf("create: %v %v", err, cr)
	}
	reassign := func(reps ...int32) pb.ErrorCode {
		var resp *pb.AlterPartitionReassignmentsResponse
		err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			var err error
			resp, err = cl.AlterPartitionReassignments(ctx, &pb.AlterPartitionReassignmentsRequest{Topics: []*pb.ReassignableTopic{{
				Name: "r", Partitions: []*pb.ReassignablePartition{{Partition: 0, Replicas: reps}}}}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetTopics()[0].GetPartitions()[0].GetErrorCode()
	}
	// Move [1 2] -> [3 4]: the leader (1) is leaving.
	if code := reassign(3, 4); code != pb.ErrorCode_NONE {
		t.Fatal(code)
	}
	p := activeImage(t, c).Topic("r").Partition(0)
	if !slices.Equal(p.Replicas, []int32{3, 4, 1, 2}) || !slices.Equal(p.Adding, []int32{3, 4}) || !slices.Equal(p.Removing, []int32{1, 2}) {
		t.Fatalf("started: %+v", p)
	}
	list, err := c.Client(c.MustActive()).ListPartitionReassignments(ctx, &pb.ListPartitionReassignmentsRequest{})
	if err != nil || len(list.GetTopics()) != 1 || len(list.GetTopics()[0].GetPartitions()) != 1 {
		t.Fatalf("list: %v %v", err, list)
	}
	// Cancel and restart it: cancel goes back to [1 2].
	if code := reassign(); code != pb.ErrorCode_NONE {
		t.Fatal(code)
	}
	if p := activeImage(t, c).Topic("r").Partition(0); !slices.Equal(p.Replicas, []int32{1, 2}) || p.IsReassigning() {
		t.Fatalf("cancelled: %+v", p)
	}
	if code := reassign(); code != pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS {
		t.Fatalf("cancel of nothing: %v", code)
	}
	if code := reassign(3, 4); code != pb.ErrorCode_NONE {
		t.Fatal(code)
	}
	tid := activeImage(t, c).Topic("r").ID()
	// The leader adds 3, then 4 to the ISR as they catch up.
	for _, join := range []int32{3, 4} {
		p := activeImage(t, c).Topic("r").Partition(0)
		var isr []*pb.IsrMember
		for _, r := range append(slices.Clone(p.ISR), join) {
			isr = append(isr, &pb.IsrMember{BrokerId: r, BrokerEpoch: bs[r-1].Epoch()})
		}
		leader := bs[p.Leader-1]
		err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			resp, err := cl.AlterPartition(ctx, &pb.AlterPartitionRequest{BrokerId: leader.ID, BrokerEpoch: leader.Epoch(),
				Topics: []*pb.AlterPartitionTopic{{TopicId: tid.Bytes(), Partitions: []*pb.AlterPartitionPartition{{
					Partition: 0, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, NewIsr: isr}}}}})
			if err == nil && resp.GetTopics()[0].GetPartitions()[0].GetErrorCode() != pb.ErrorCode_NONE {
				t.Fatalf("AlterPartition +%d: %v", join, resp)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	p = activeImage(t, c).Topic("r").Partition(0)
	if !slices.Equal(p.Replicas, []int32{3, 4}) || p.IsReassigning() || p.Leader != 3 || !slices.Equal(p.ISR, []int32{3, 4}) {
		t.Fatalf("finished: %+v", p)
	}
}

func TestAddRemoveVoter(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	a := c.MustActive()
	ctx := ctxT(t, 10*time.Second)
	// Remove a follower, then add it back.
	f := (a + 1) % c.Size()
	if err := c.Node(a).RemoveVoter(ctx, int32(f+1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(a).RemoveVoter(ctx, int32(f+1)); codeOf(err) != pb.ErrorCode_VOTER_NOT_FOUND {
		t.Fatalf("remove twice: %v", err)
	}
	q, err := c.Client(a).DescribeQuorum(ctx, &pb.DescribeQuorumRequest{})
	if err != nil || len(q.GetVoters()) != 2 {
		t.Fatalf("after remove: %v %v", err, q)
	}
	if err := c.Node(a).AddVoter(ctx, controller.Voter{ID: int32(a + 1), Addr: c.Addrs[a]}); codeOf(err) != pb.ErrorCode_DUPLICATE_VOTER {
		t.Fatalf("add existing: %v", err)
	}
	// The removed node shut its raft down (ShutdownOnRemove): restart it.
	c.Stop(f)
	c.Restart(f)
	_, err = c.Client(a).AddVoter(ctx, &pb.AddVoterRequest{VoterId: int32(f + 1), Address: c.Addrs[f]})
	if err != nil {
		t.Fatal(err)
	}
	q, err = c.Client(a).DescribeQuorum(ctx, &pb.DescribeQuorumRequest{})
	if err != nil || len(q.GetVoters()) != 3 {
		t.Fatalf("after add: %v %v", err, q)
	}
	if _, err := c.Client(f).AddVoter(ctx, &pb.AddVoterRequest{VoterId: 9, Address: "127.0.0.1:1"}); codeOf(err) != pb.ErrorCode_NOT_CONTROLLER {
		t.Fatalf("AddVoter on a follower: %v", err)
	}
}
