package controller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratalog/strata/controller"
	"github.com/stratalog/strata/controller/controllertest"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, c *controllertest.Cluster, name string, parts, rf int32) *pb.CreateTopicResult {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	var resp *pb.CreateTopicsResponse
	err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		resp, err = cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: name, NumPartitions: parts, ReplicationFactor: rf}}})
		return err
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	r := resp.GetTopics()[0]
	if r.GetErrorCode() != pb.ErrorCode_NONE {
		t.Fatalf("create %s: %v %s", name, r.GetErrorCode(), r.GetErrorMessage())
	}
	return r
}

// startBrokers registers n fake brokers (ids 1..n, racks r0/r1/...) that
// heartbeat every 50 ms, and waits until all are unfenced.
func startBrokers(t *testing.T, c *controllertest.Cluster, n int, racks ...string) []*controllertest.FakeBroker {
	t.Helper()
	var bs []*controllertest.FakeBroker
	for i := range n {
		rack := ""
		if len(racks) > 0 {
			rack = racks[i%len(racks)]
		}
		b := c.NewFakeBroker(int32(i+1), rack)
		if _, err := b.Register(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		b.Start(50 * time.Millisecond)
		t.Cleanup(b.Stop)
		bs = append(bs, b)
	}
	waitUntil(t, "brokers unfenced", 10*time.Second, func() bool {
		for _, b := range bs {
			if l := b.Last(); l == nil || l.GetIsFenced() {
				return false
			}
		}
		return true
	})
	return bs
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestElectionThreeVoters(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	a := c.MustActive()
	// Exactly one active controller.
	for i := range c.Size() {
		if i != a && c.Node(i).IsActive() {
			t.Fatalf("nodes %d and %d both active", a+1, i+1)
		}
	}
	// A follower answers writes with NOT_CONTROLLER naming the leader.
	f := (a + 1) % c.Size()
	waitUntil(t, "follower knows the leader", 5*time.Second, func() bool { id, _ := c.Node(f).Leader(); return id == int32(a+1) })
	_, err := c.Client(f).CreateTopics(ctxT(t, 5*time.Second), &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "x", NumPartitions: 1, ReplicationFactor: 1}}})
	var ce *controller.Error
	if !errors.As(controller.FromGRPC(err), &ce) || ce.Code != pb.ErrorCode_NOT_CONTROLLER {
		t.Fatalf("follower CreateTopics: %v, want NOT_CONTROLLER", err)
	}
	if ce.LeaderID != int32(a+1) || ce.LeaderAddr != c.Addrs[a] {
		t.Fatalf("NOT_CONTROLLER names %d@%s, want %d@%s", ce.LeaderID, ce.LeaderAddr, a+1, c.Addrs[a])
	}
	// The active controller wrote a cluster id; every voter has it.
	waitUntil(t, "cluster id everywhere", 5*time.Second, func() bool {
		for i := range c.Size() {
			if c.Node(i).Image().ClusterID() == "" {
				return false
			}
		}
		return true
	})
	q, err := c.Client(f).DescribeQuorum(ctxT(t, 5*time.Second), &pb.DescribeQuorumRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if q.GetLeaderId() != int32(a+1) || len(q.GetVoters()) != 3 {
		t.Fatalf("DescribeQuorum: %v", q)
	}
}

func TestLeaderKilledNewActiveAcceptsWrites(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	a := c.MustActive()
	startBrokers(t, c, 1)
	createTopic(t, c, "before", 1, 1)
	c.Stop(a)
	b := c.MustActive()
	if b == a {
		t.Fatal("stopped node still active")
	}
	createTopic(t, c, "after", 1, 1)
	c.Restart(a)
	waitUntil(t, "restarted node catches up", 10*time.Second, func() bool {
		img := c.Node(a).Image()
		return img.Topic("before") != nil && img.Topic("after") != nil
	})
}

func TestPartitionedMinorityCannotCommit(t *testing.T) {
	t.Run("cut", func(t *testing.T) { testMinority(t, false) })
	t.Run("blackhole", func(t *testing.T) { testMinority(t, true) })
}

func testMinority(t *testing.T, blackhole bool) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	a := c.MustActive()
	startBrokers(t, c, 1)
	createTopic(t, c, "base", 1, 1)
	if blackhole {
		c.Net.Blackhole([]string{c.Addrs[a]}, c.Addrs)
	} else {
		c.Net.Isolate(c.Addrs[a], c.Addrs)
	}
	// The isolated leader can not commit: the pending request fails with
	// NOT_CONTROLLER when it steps down (its lease runs out), well before
	// the request's own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	start := time.Now()
	resp, err := c.Client(a).CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "minority", NumPartitions: 1, ReplicationFactor: 1}}})
	cancel()
	if err == nil && resp.GetTopics()[0].GetErrorCode() == pb.ErrorCode_NONE {
		t.Fatal("an isolated leader committed a topic")
	}
	if codeOf(err) != pb.ErrorCode_NOT_CONTROLLER || time.Since(start) > 5*time.Second {
		t.Fatalf("isolated leader answered %v after %v, want NOT_CONTROLLER promptly", err, time.Since(start))
	}
	// The majority elects a new active controller that commits.
	var b int
	waitUntil(t, "majority leader", 10*time.Second, func() bool {
		for i := range c.Size() {
			if i != a && c.Node(i).IsActive() {
				b = i
				return true
			}
		}
		return false
	})
	ctx2 := ctxT(t, 10*time.Second)
	r2, err := c.Client(b).CreateTopics(ctx2, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "majority", NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil || r2.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE {
		t.Fatalf("majority create: %v %v", err, r2)
	}
	if c.Node(a).IsActive() {
		t.Fatal("isolated node still active")
	}
	c.Net.HealAll()
	waitUntil(t, "healed node converges", 10*time.Second, func() bool {
		img := c.Node(a).Image()
		return img.Topic("majority") != nil
	})
	if c.Node(a).Image().Topic("minority") != nil {
		t.Fatal("the minority's topic survived")
	}
}

func TestAllVotersRestartFromDisk(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	c.MustActive()
	b := c.NewFakeBroker(1, "")
	if _, err := b.Register(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Heartbeat(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	ids := map[string][]byte{}
	for _, n := range []string{"a", "b", "c"} {
		ids[n] = createTopic(t, c, n, 2, 1).GetTopicId()
	}
	a := c.MustActive()
	off := c.Node(a).Image().Offset()
	cluster := c.Node(a).Image().ClusterID()
	for i := range c.Size() {
		c.Stop(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.MustActive()
	for i := range c.Size() {
		waitUntil(t, "replay", 10*time.Second, func() bool { return c.Node(i).Image().Offset() >= off })
		img := c.Node(i).Image()
		if img.ClusterID() != cluster {
			t.Fatalf("node %d cluster id %q, want %q", i+1, img.ClusterID(), cluster)
		}
		for n, id := range ids {
			tp := img.Topic(n)
			if tp == nil || string(tp.ID().Bytes()) != string(id) || tp.NumPartitions() != 2 {
				t.Fatalf("node %d topic %s after restart: %v", i+1, n, tp)
			}
		}
		if img.Broker(1) == nil {
			t.Fatalf("node %d lost broker 1", i+1)
		}
	}
}

func TestSnapshotAndRestore(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{
		Snapshots: controller.Snapshots{Threshold: 16, Interval: 50 * time.Millisecond, Trailing: 4},
	})
	a := c.MustActive()
	startBrokers(t, c, 1)
	follower := (a + 1) % c.Size()
	c.Stop(follower)
	for i := range 40 {
		createTopic(t, c, "t"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1, 1)
	}
	// Every running node snapshots and compacts its log.
	a = c.MustActive()
	if err := c.Node(a).Snapshot(); err != nil {
		t.Fatal(err)
	}
	// The restarted follower is far behind the leader's first log entry: it
	// gets the snapshot (InstallSnapshot) and then the tail.
	c.Restart(follower)
	want := c.Node(a).Image().NumTopics()
	waitUntil(t, "follower restored from snapshot", 10*time.Second, func() bool {
		return c.Node(follower).Image().NumTopics() == want
	})
	// FetchMetadata from the beginning answers with the image.
	resp, err := c.Client(a).FetchMetadata(ctxT(t, 5*time.Second), &pb.FetchMetadataRequest{BrokerId: -1, FromOffset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSnapshot() == nil || len(resp.GetSnapshot().GetTopics()) != want {
		t.Fatalf("FetchMetadata from 1 after compaction: snapshot %v", resp.GetSnapshot() != nil)
	}
	// A node restarted from its own snapshot has the same image.
	c.Stop(follower)
	c.Restart(follower)
	waitUntil(t, "restore from own snapshot", 10*time.Second, func() bool {
		return c.Node(follower).Image().NumTopics() == want
	})
}
