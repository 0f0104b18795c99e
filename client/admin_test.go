package client_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// codeOf is err's Strata error code (NONE for nil, -1 for a non-*Error).
func codeOf(err error) pb.ErrorCode {
	if err == nil {
		return pb.ErrorCode_NONE
	}
	var e *client.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return -1
}

func newAdmin(t *testing.T, c *brokertest.Cluster) *client.Admin {
	t.Helper()
	cl, err := client.New(client.Config{Bootstrap: c.Bootstrap(), RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return client.NewAdmin(cl)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAdmin runs the admin API's happy paths and bad inputs against one
// three-broker cluster.
func TestAdmin(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	a := newAdmin(t, c)

	t.Run("CreateDescribeListDelete", func(t *testing.T) {
		ctx := testCtx(t)
		res, err := a.CreateTopics(ctx, []client.NewTopic{
			{Name: "orders", Partitions: 3, ReplicationFactor: 2, Configs: map[string]string{"retention.ms": "60000"}},
			{Name: "defaults"}, // cluster defaults: 1 partition, rf 1
			{Name: "too-many-replicas", Partitions: 1, ReplicationFactor: 5},
			{Name: "bad-config", Configs: map[string]string{"retention.ms": "soon"}},
			{Name: "unknown-config", Configs: map[string]string{"no.such.key": "1"}},
			{Name: "bad/name"},
		}, client.CreateTopicsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []pb.ErrorCode{pb.ErrorCode_NONE, pb.ErrorCode_NONE, pb.ErrorCode_INVALID_REPLICATION_FACTOR,
			pb.ErrorCode_INVALID_CONFIG, pb.ErrorCode_INVALID_CONFIG, pb.ErrorCode_INVALID_TOPIC_EXCEPTION}
		for i, r := range res {
			if codeOf(r.Err) != want[i] {
				t.Errorf("create %s: %v, want %v", r.Name, r.Err, want[i])
			}
		}
		if r := res[0]; r.Partitions != 3 || r.ReplicationFactor != 2 || r.Configs["retention.ms"] != "60000" || len(r.ID) != 36 {
			t.Errorf("orders: %+v", r)
		}
		if r := res[1]; r.Partitions != 1 || r.ReplicationFactor != 1 {
			t.Errorf("defaults: %d partitions, rf %d; want the cluster defaults 1, 1", r.Partitions, r.ReplicationFactor)
		}
		var e *client.Error
		if errors.As(res[2].Err, &e); e == nil || e.Retriable || !contains(e.Message, "live brokers") {
			t.Errorf("rf error should say what to do: %v", res[2].Err)
		}

		// Again: already exists. Validate-only creates nothing.
		res, err = a.CreateTopics(ctx, []client.NewTopic{{Name: "orders"}, {Name: "dry-run", Partitions: 2}}, client.CreateTopicsOptions{ValidateOnly: true})
		if err != nil || codeOf(res[0].Err) != pb.ErrorCode_TOPIC_ALREADY_EXISTS || res[1].Err != nil {
			t.Fatalf("validate-only: %v %+v", err, res)
		}
		if err := a.WaitForTopics(ctx, true, "orders", "defaults"); err != nil {
			t.Fatal(err)
		}

		ds, err := a.DescribeTopics(ctx, []string{"orders", "dry-run"}, client.DescribeTopicsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 2 || ds[0].Name != "dry-run" || codeOf(ds[0].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("describe: %+v", ds)
		}
		o := ds[1]
		if o.Err != nil || len(o.Partitions) != 3 || o.ReplicationFactor() != 2 {
			t.Fatalf("describe orders: %+v", o)
		}
		for i, p := range o.Partitions {
			if p.Partition != int32(i) || len(p.Replicas) != 2 || p.Leader != p.Replicas[0] || len(p.ISR) == 0 || len(p.Offline) != 0 {
				t.Errorf("orders-%d: %+v", i, p)
			}
		}
		ls, err := a.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range ls {
			names = append(names, l.Name)
		}
		if !slices.Contains(names, "orders") || !slices.Contains(names, "defaults") || !slices.IsSorted(names) {
			t.Errorf("list: %v", names)
		}

		del, err := a.DeleteTopics(ctx, "defaults", "never-was")
		if err != nil || del[0].Err != nil || codeOf(del[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("delete: %v %+v", err, del)
		}
		if err := a.WaitForTopics(ctx, false, "defaults"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.DeleteTopics(ctx); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Errorf("delete nothing: %v", err)
		}
		if _, err := a.CreateTopics(ctx, nil, client.CreateTopicsOptions{}); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Errorf("create nothing: %v", err)
		}
	})

	t.Run("CreatePartitions", func(t *testing.T) {
		ctx := testCtx(t)
		c.CreateTopic("grow", 2, 1, nil)
		res, err := a.CreatePartitions(ctx, []client.NewPartitions{{Topic: "grow", Count: 4}, {Topic: "grow-nope", Count: 4}}, client.CreatePartitionsOptions{})
		if err != nil || res[0].Err != nil || codeOf(res[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("grow: %v %+v", err, res)
		}
		res, err = a.CreatePartitions(ctx, []client.NewPartitions{{Topic: "grow", Count: 3}}, client.CreatePartitionsOptions{})
		if err != nil || codeOf(res[0].Err) != pb.ErrorCode_INVALID_PARTITIONS || !contains(res[0].Err.Error(), "never shrink") {
			t.Fatalf("shrink: %v %+v", err, res)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ds, err := a.DescribeTopics(ctx, []string{"grow"}, client.DescribeTopicsOptions{})
			if err == nil && len(ds[0].Partitions) == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("grow: still %+v %v", ds, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("Configs", func(t *testing.T) {
		ctx := testCtx(t)
		c.CreateTopic("cfg", 1, 1, map[string]string{"cleanup.policy": "compact"})
		rs, err := a.DescribeConfigs(ctx, []client.ConfigResource{client.TopicResource("cfg"), client.TopicResource("cfg-nope")}, "cleanup.policy", "retention.ms")
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Err != nil || len(rs[0].Configs) != 2 || rs[0].Configs[0].Value != "compact" || rs[0].Configs[0].Source != "topic" || rs[0].Configs[1].Source != "default" {
			t.Errorf("describe cfg: %+v", rs[0])
		}
		if codeOf(rs[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Errorf("describe unknown topic: %v", rs[1].Err)
		}
		ar, err := a.AlterConfigs(ctx, []client.ConfigChange{
			{Resource: client.TopicResource("cfg"), Ops: []client.ConfigOp{{Key: "retention.ms", Value: "1000"}, {Key: "cleanup.policy", Op: client.ConfigDelete}}},
			{Resource: client.TopicResource("cfg"), Ops: []client.ConfigOp{{Key: "retention.ms", Value: "-5"}}},
			{Resource: client.BrokerResource(101), Ops: []client.ConfigOp{{Key: "no.such.key", Value: "1"}}},
		}, client.AlterConfigsOptions{})
		if err != nil || ar[0].Err != nil || codeOf(ar[1].Err) != pb.ErrorCode_INVALID_CONFIG || codeOf(ar[2].Err) != pb.ErrorCode_INVALID_CONFIG {
			t.Fatalf("alter: %v %+v", err, ar)
		}
		rs, err = a.DescribeConfigs(ctx, []client.ConfigResource{client.TopicResource("cfg")}, "cleanup.policy", "retention.ms")
		if err != nil || rs[0].Configs[0].Value != "delete" || rs[0].Configs[1].Value != "1000" {
			t.Fatalf("after alter: %v %+v", err, rs)
		}
		rs, err = a.DescribeConfigs(ctx, []client.ConfigResource{client.BrokerResource(101)})
		if err != nil || rs[0].Err != nil || len(rs[0].Configs) == 0 {
			t.Fatalf("broker configs: %v %+v", err, rs)
		}
		if _, err := a.AlterConfigs(ctx, []client.ConfigChange{{Resource: client.TopicResource("cfg")}}, client.AlterConfigsOptions{}); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Errorf("alter with no ops: %v", err)
		}
	})

	t.Run("ClusterAndQuorum", func(t *testing.T) {
		ctx := testCtx(t)
		d, err := a.DescribeCluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Brokers) != 3 || d.ControllerID < 0 || d.ClusterID == "" {
			t.Fatalf("cluster: %+v", d)
		}
		for i, b := range d.Brokers {
			if b.ID != int32(101+i) || b.Fenced || b.Epoch <= 0 || b.Addr != c.Addr(b.ID) {
				t.Errorf("broker %+v (addr want %s)", b, c.Addr(b.ID))
			}
		}
		q, err := a.DescribeQuorum(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if q.LeaderID != d.ControllerID || len(q.Voters) != 1 || q.CommitIndex == 0 || q.Voters[0].Lag(q) != 0 {
			t.Fatalf("quorum: %+v", q)
		}
	})

	t.Run("ReassignElectOffsets", func(t *testing.T) {
		ctx := testCtx(t)
		if _, err := a.AlterPartitionReassignments(ctx, nil); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Fatalf("empty plan: %v", err)
		}
		if _, err := a.AlterPartitionReassignments(ctx, []client.Reassignment{{TopicPartition: client.TopicPartition{Topic: "x"}}}); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Fatalf("empty replicas: %v", err)
		}
		res, err := a.CreateTopics(ctx, []client.NewTopic{{Name: "moves", Assignments: [][]int32{{101, 102}}}}, client.CreateTopicsOptions{})
		if err != nil || res[0].Err != nil {
			t.Fatalf("create: %v %+v", err, res)
		}
		if err := a.WaitForTopics(ctx, true, "moves"); err != nil {
			t.Fatal(err)
		}
		tp := client.TopicPartition{Topic: "moves", Partition: 0}
		start := time.Now().Add(-time.Second)
		produce(t, ctx, a, tp, 10)
		// Warm the metadata cache with 101 as leader.
		offs, err := a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: client.OffsetLatest, {Topic: "moves", Partition: 7}: client.OffsetEarliest})
		if err != nil || offs[0].Err != nil || offs[0].Offset != 10 || codeOf(offs[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("list offsets: %v %+v", err, offs)
		}

		// Move to 102, 103 (101 leaves: the leader moves).
		rr, err := a.AlterPartitionReassignments(ctx, []client.Reassignment{{TopicPartition: tp, Replicas: []int32{102, 103}},
			{TopicPartition: client.TopicPartition{Topic: "moves", Partition: 3}, Replicas: []int32{101}},
			{TopicPartition: client.TopicPartition{Topic: "nope", Partition: 0}, Replicas: []int32{101}}})
		if err != nil || rr[0].Err != nil || codeOf(rr[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION || codeOf(rr[2].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("reassign: %v %+v", err, rr)
		}
		waitReplicas(t, ctx, a, tp, []int32{102, 103})
		if cr, err := a.CancelPartitionReassignments(ctx, []client.TopicPartition{tp}); err != nil || codeOf(cr[0].Err) != pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS {
			t.Fatalf("cancel none: %v %+v", err, cr)
		}

		// The cached metadata still names 101: ListOffsets and DeleteRecords
		// follow NOT_LEADER_OR_FOLLOWER to 102 (whose high watermark
		// catches up with its followers' fetches).
		for {
			offs, err = a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: client.OffsetLatest})
			if err != nil {
				t.Fatal(err)
			}
			if offs[0].Err == nil && offs[0].Offset == 10 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("latest on the new leader: %+v", offs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		dr, err := a.DeleteRecords(ctx, map[client.TopicPartition]int64{tp: 4})
		if err != nil || dr[0].Err != nil || dr[0].LowWatermark != 4 {
			t.Fatalf("delete records: %v %+v", err, dr)
		}
		offs, err = a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: client.OffsetEarliest})
		if err != nil || offs[0].Err != nil || offs[0].Offset != 4 {
			t.Fatalf("earliest after delete: %v %+v", err, offs)
		}
		offs, err = a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: client.OffsetForTime(start)})
		if err != nil || offs[0].Err != nil || offs[0].Offset != 4 || offs[0].Timestamp < start.UnixMilli() {
			t.Fatalf("offset for a time before the records: %v %+v", err, offs)
		}
		offs, err = a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: client.OffsetForTime(time.Now().Add(time.Hour))})
		if err != nil || offs[0].Err != nil || offs[0].Offset != -1 {
			t.Fatalf("offset for a time after the records: %v %+v", err, offs)
		}
		if _, err := a.ListOffsets(ctx, map[client.TopicPartition]client.OffsetSpec{tp: -3}); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Fatalf("bad offset spec: %v", err)
		}
		if _, err := a.DeleteRecords(ctx, nil); codeOf(err) != pb.ErrorCode_INVALID_REQUEST {
			t.Fatalf("delete records of nothing: %v", err)
		}
		dr, err = a.DeleteRecords(ctx, map[client.TopicPartition]int64{tp: 99})
		if err != nil || codeOf(dr[0].Err) != pb.ErrorCode_OFFSET_OUT_OF_RANGE {
			t.Fatalf("delete past the high watermark: %v %+v", err, dr)
		}

		// Reorder to 103, 102: same set, the leader stays until a preferred election.
		if rr, err = a.AlterPartitionReassignments(ctx, []client.Reassignment{{TopicPartition: tp, Replicas: []int32{103, 102}}}); err != nil || rr[0].Err != nil {
			t.Fatalf("reorder: %v %+v", err, rr)
		}
		waitReplicas(t, ctx, a, tp, []int32{103, 102})
		deadline := time.Now().Add(10 * time.Second)
		for {
			er, err := a.ElectLeaders(ctx, client.ElectPreferred, []client.TopicPartition{tp})
			if err != nil {
				t.Fatal(err)
			}
			if er[0].Err == nil || client.ElectionNotNeeded(er[0].Err) {
				if er[0].Leader != 103 {
					t.Fatalf("preferred election: %+v", er[0])
				}
				break
			}
			// 103 may not be in the ISR yet.
			if codeOf(er[0].Err) != pb.ErrorCode_PREFERRED_LEADER_NOT_AVAILABLE || time.Now().After(deadline) {
				t.Fatalf("preferred election: %+v", er[0])
			}
			time.Sleep(50 * time.Millisecond)
		}
		er, err := a.ElectLeaders(ctx, client.ElectPreferred, []client.TopicPartition{tp, {Topic: "nope", Partition: 0}})
		if err != nil || !client.ElectionNotNeeded(er[0].Err) || codeOf(er[1].Err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
			t.Fatalf("second election: %v %+v", err, er)
		}
	})
}

// TestAdminUnreachable: no broker answers: a typed, retriable error that
// names the bootstrap list.
func TestAdminUnreachable(t *testing.T) {
	cl, err := client.New(client.Config{Bootstrap: []string{"127.0.0.1:1"}, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = client.NewAdmin(cl).ListTopics(ctx)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != pb.ErrorCode_BROKER_NOT_AVAILABLE || !contains(e.Message, "127.0.0.1:1") {
		t.Fatalf("unreachable: %v", err)
	}
}

func waitReplicas(t *testing.T, ctx context.Context, a *client.Admin, tp client.TopicPartition, want []int32) {
	t.Helper()
	for {
		ongoing, err := a.ListPartitionReassignments(ctx, []client.TopicPartition{tp})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := a.DescribeTopics(ctx, []string{tp.Topic}, client.DescribeTopicsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ongoing) == 0 && ds[0].Err == nil && slices.Equal(ds[0].Partitions[tp.Partition].Replicas, want) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%v: replicas %v, ongoing %+v; want %v", tp, ds[0].Partitions, ongoing, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produce appends n records to tp's leader with acks=all.
func produce(t *testing.T, ctx context.Context, a *client.Admin, tp client.TopicPartition, n int) {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{})
	for range n {
		b.Append(time.Now().UnixMilli(), nil, []byte("v"), nil) // (not 1970: retention would delete it)
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	for {
		bc, _, err := a.Client().LeaderClient(ctx, tp.Topic, tp.Partition)
		if err == nil {
			var pr *pb.ProduceResponse
			pr, err = bc.Produce(ctx, &pb.ProduceRequest{Acks: -1, Topics: []*pb.ProduceTopic{{Topic: tp.Topic,
				Partitions: []*pb.ProducePartition{{Partition: tp.Partition, Records: batch}}}}})
			if err == nil && pr.Topics[0].Partitions[0].ErrorCode == pb.ErrorCode_NONE {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("produce: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestAdminThreeVoters: admin writes reach the active controller of a
// three-voter quorum (following NOT_CONTROLLER when the first voter asked is
// a follower), and DescribeQuorum answers
// with the leader's view of every voter.
func TestAdminThreeVoters(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Voters: 3, Brokers: 1})
	a := newAdmin(t, c)
	ctx := testCtx(t)
	for i := range 3 {
		res, err := a.CreateTopics(ctx, []client.NewTopic{{Name: "t" + string(rune('a'+i))}}, client.CreateTopicsOptions{})
		if err != nil || res[0].Err != nil {
			t.Fatalf("create: %v %+v", err, res)
		}
	}
	q, err := a.DescribeQuorum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Voters) != 3 || q.LeaderID < 0 || q.CommitIndex == 0 {
		t.Fatalf("quorum: %+v", q)
	}
	leaders := 0
	for _, v := range q.Voters {
		if v.ID == q.LeaderID {
			leaders++
			if v.Lag(q) != 0 {
				t.Errorf("leader lag %d", v.Lag(q))
			}
		}
	}
	d, err := a.DescribeCluster(ctx)
	if err != nil || leaders != 1 || d.ControllerID != q.LeaderID {
		t.Fatalf("cluster %+v, quorum %+v: %v", d, q, err)
	}
}
