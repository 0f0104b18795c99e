package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/integration/checker"
	"github.com/stratalog/strata/integration/cluster"
	"github.com/stratalog/strata/integration/netproxy"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TestNewLeaderNeverShowsAnOlderHW: a new leader must not answer
// ListOffsets(latest) with a high watermark below one its predecessor
// already answered. The followers' fetch answers are held (a one-way cut
// leader -> followers), so the leader's HW moves past what the followers
// were told; then the leader is killed. Whichever follower takes over
// knows only an older HW: it must refuse (OFFSET_NOT_AVAILABLE, retriable)
// until its HW has caught up with the start of its epoch, not answer the
// stale value (Kafka's rule, KAFKA-9838).
func TestNewLeaderNeverShowsAnOlderHW(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process: not in -short")
	}
	c := cluster.New(t, cluster.Config{Binary: strataBin, Controllers: 3, Brokers: 3})
	nem := c.Nemesis(t.Logf)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client(client.Config{RequestTimeout: 5 * time.Second, MetadataMaxAge: time.Second})
	admin := client.NewAdmin(cl)
	if err := createTopic(ctx, admin, client.NewTopic{Name: jepsenTopic, Assignments: [][]int32{{1, 2, 3}},
		Configs: map[string]string{"min.insync.replicas": "2"}}); err != nil {
		t.Fatal(err)
	}
	if err := waitFullISR(ctx, c, jepsenTopic, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	prod, err := client.NewProducer(cl, client.ProducerConfig{Acks: client.AcksAll, RequestTimeout: 5 * time.Second, DeliveryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := checker.StartWorkload(prod, checker.WorkloadConfig{Topic: jepsenTopic, Partitions: 1})
	defer w.Stop(ctx)
	if err := w.WaitAcked(ctx, 200); err != nil {
		t.Fatal(err)
	}
	leader, err := (&run{c: c}).leaderOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	hwAt := func(n *cluster.Node) (int64, pb.ErrorCode) {
		bc, err := c.BrokerClient(n)
		if err != nil {
			return -1, pb.ErrorCode_UNKNOWN_SERVER_ERROR
		}
		lctx, lcancel := context.WithTimeout(ctx, time.Second)
		defer lcancel()
		resp, err := bc.ListOffsets(lctx, &pb.ListOffsetsRequest{ReplicaId: -1, Topics: []*pb.ListOffsetsTopic{{Topic: jepsenTopic,
			Partitions: []*pb.ListOffsetsPartition{{Partition: 0, TimestampMs: -1, CurrentLeaderEpoch: -1}}}}})
		if err != nil {
			return -1, pb.ErrorCode_UNKNOWN_SERVER_ERROR
		}
		p := resp.Topics[0].Partitions[0]
		return p.Offset, p.ErrorCode
	}
	followers := cluster.Others(c.Brokers(), leader)
	// The next leader is the first follower in replica order; delay the
	// other's fetches to it, so that it stays on its old HW for a while.
	next, other := followers[0], followers[1]
	nem.Delay([]*cluster.Node{next}, 0) // recorded in the history; the rule below is per source
	next.BrokerProxy.Set(other.Name, netproxy.Rule{Delay: 500 * time.Millisecond})
	nem.CutOneWay([]*cluster.Node{leader}, followers)
	var seen int64 = -1
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if hw, code := hwAt(leader); code == pb.ErrorCode_NONE && hw > seen {
			seen = hw
		}
		time.Sleep(10 * time.Millisecond)
	}
	if seen < 0 {
		t.Fatal("the leader never answered ListOffsets")
	}
	t.Logf("%s answered HW %d; killing it", leader.Name, seen)
	if err := nem.Kill(leader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	answered := false
	for time.Now().Before(deadline) && !answered {
		for _, f := range followers {
			hw, code := hwAt(f)
			switch code {
			case pb.ErrorCode_NONE:
				if hw < seen {
					t.Fatalf("new leader %s answered HW %d after %s had answered %d", f.Name, hw, leader.Name, seen)
				}
				t.Logf("new leader %s answers HW %d (>= %d)", f.Name, hw, seen)
				answered = true
			case pb.ErrorCode_OFFSET_NOT_AVAILABLE, pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, pb.ErrorCode_LEADER_NOT_AVAILABLE,
				pb.ErrorCode_UNKNOWN_SERVER_ERROR, pb.ErrorCode_FENCED_LEADER_EPOCH, pb.ErrorCode_UNKNOWN_LEADER_EPOCH:
			default:
				t.Logf("%s: %v", f.Name, code)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !answered {
		t.Fatal("no new leader answered ListOffsets within 30 s")
	}
	nem.Heal()
	if err := nem.Start(ctx, leader); err != nil {
		t.Fatal(err)
	}
}
