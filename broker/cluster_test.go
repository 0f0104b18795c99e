package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// testCluster is a brokertest cluster with the helpers these tests share.
type testCluster struct {
	*brokertest.Cluster
	t      testing.TB
	lagMax time.Duration
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
}

func newTestCluster(t testing.TB, voters, brokers int) *testCluster {
	t.Helper()
	lag := 1500 * time.Millisecond
	c := &testCluster{t: t, lagMax: lag, conns: map[string]*grpc.ClientConn{},
		Cluster: brokertest.NewCluster(t, brokertest.Options{Voters: voters, Brokers: brokers, ReplicaLagTimeMax: lag})}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, cc := range c.conns {
			cc.Close()
		}
	})
	return c
}

func (c *testCluster) client(id int32) pb.BrokerServiceClient {
	addr := c.Addr(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.conns[addr]
	if cc == nil {
		var err error
		cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.t.Fatal(err)
		}
		c.conns[addr] = cc
	}
	return pb.NewBrokerServiceClient(cc)
}

// leaderOf waits until some live broker's metadata names a live leader for
// the partition whose ISR has at least minISR members, and returns it.
func (c *testCluster) leaderOf(topic string, partition int32, minISR int) int32 {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range c.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := c.client(id).Metadata(ctx, &pb.MetadataRequest{Topics: []string{topic}})
			cancel()
			if err != nil || len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) <= int(partition) {
				continue
			}
			p := resp.Topics[0].Partitions[partition]
			live := c.Broker(p.LeaderId) != nil
			if live && len(p.Isr) >= minISR && c.leadsItself(p.LeaderId, topic, partition, p.LeaderEpoch) {
				return p.LeaderId
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader for %s-%d with ISR >= %d", topic, partition, minISR)
	return -1
}

// leadsItself reports whether broker id's own metadata names it the leader
// of the partition at epoch (it then hosts the leader replica).
func (c *testCluster) leadsItself(id int32, topic string, partition, epoch int32) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := c.client(id).Metadata(ctx, &pb.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) <= int(partition) {
		return false
	}
	p := resp.Topics[0].Partitions[partition]
	return p.LeaderId == id && p.LeaderEpoch == epoch
}

func batchOf(t testing.TB, values ...string) []byte {
	b := record.NewBuilder(record.BatchOptions{})
	for _, v := range values {
		if err := b.Append(time.Now().UnixMilli(), nil, []byte(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

func produce(ctx context.Context, cl pb.BrokerServiceClient, topic string, partition int32, acks int32, batch []byte) (*pb.ProducePartitionResult, error) {
	resp, err := cl.Produce(ctx, &pb.ProduceRequest{Acks: acks, TimeoutMs: 5000, Topics: []*pb.ProduceTopic{{
		Topic: topic, Partitions: []*pb.ProducePartition{{Partition: partition, Records: batch}}}}})
	if err != nil {
		return nil, err
	}
	return resp.Topics[0].Partitions[0], nil
}

// consume reads a partition from offset 0 up to its HW through Fetch with
// decoded records, and returns offset -> value.
func consume(t *testing.T, cl pb.BrokerServiceClient, topic string, partition int32, codec bool) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	off := int64(0)
	var opts []grpc.CallOption
	if codec {
		opts = append(opts, wire.CallOption())
	}
	for range 10000 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cl.Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, MaxWaitMs: 0, Decode: true, Topics: []*pb.FetchTopic{{
			Topic: topic, Partitions: []*pb.FetchPartition{{Partition: partition, FetchOffset: off, CurrentLeaderEpoch: -1}}}}}, opts...)
		cancel()
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("fetch at %d: %v %s", off, p.ErrorCode, p.ErrorMessage)
		}
		for _, r := range p.DecodedRecords {
			if r.Offset >= p.HighWatermark {
				t.Fatalf("consumer read offset %d past the HW %d", r.Offset, p.HighWatermark)
			}
			if _, dup := out[r.Offset]; dup {
				t.Fatalf("offset %d read twice", r.Offset)
			}
			out[r.Offset] = string(r.Value)
		}
		if p.NextFetchOffset <= off || p.NextFetchOffset >= p.HighWatermark {
			return out
		}
		off = p.NextFetchOffset
	}
	return out
}

func TestProduceFetchReplicated(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("orders", 1, 3, map[string]string{"min.insync.replicas": "2"})
	leader := c.leaderOf("orders", 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var want []string
	for i := range 20 {
		vals := []string{fmt.Sprintf("v%d-a", i), fmt.Sprintf("v%d-b", i)}
		r, err := produce(ctx, c.client(leader), "orders", 0, -1, batchOf(t, vals...))
		if err != nil || r.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("produce %d: %v %v", i, err, r)
		}
		if r.BaseOffset != int64(2*i) {
			t.Fatalf("produce %d at offset %d", i, r.BaseOffset)
		}
		want = append(want, vals...)
	}
	// Plain records from generated stubs alone.
	resp, err := c.client(leader).Produce(ctx, &pb.ProduceRequest{Acks: 1, Topics: []*pb.ProduceTopic{{Topic: "orders",
		Partitions: []*pb.ProducePartition{{Partition: 0, PlainRecords: []*pb.Record{{Key: []byte("k"), Value: []byte("plain")}}}}}}})
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("plain produce: %v %v", err, resp)
	}
	want = append(want, "plain")
	// Wait for the plain record to be committed, then read everything, with both codecs.
	deadline := time.Now().Add(10 * time.Second)
	for _, zc := range []bool{false, true} {
		var got map[int64]string
		for {
			got = consume(t, c.client(leader), "orders", 0, zc)
			if len(got) == len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i, v := range want {
			if got[int64(i)] != v {
				t.Fatalf("codec %v: offset %d = %q, want %q (read %d records)", zc, i, got[int64(i)], v, len(got))
			}
		}
	}
	// Followers hold the same records.
	for _, id := range c.IDs() {
		if id == leader {
			continue
		}
		c.waitFollowerLEO(id, "orders", 0, int64(len(want)))
	}
	// A follower refuses produce and consumer fetch with NOT_LEADER_OR_FOLLOWER and names the leader.
	for _, id := range c.IDs() {
		if id == leader {
			continue
		}
		r, err := produce(ctx, c.client(id), "orders", 0, 1, batchOf(t, "x"))
		if err != nil || r.ErrorCode != pb.ErrorCode_NOT_LEADER_OR_FOLLOWER || r.CurrentLeader.GetLeaderId() != leader {
			t.Fatalf("produce to follower %d: %v %v", id, err, r)
		}
		break
	}
}

// waitFollowerLEO waits for a broker's local log of a partition to reach leo.
func (c *testCluster) waitFollowerLEO(id int32, topic string, partition int32, leo int64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b := c.Broker(id); b != nil {
			if got := b.LogEndOffset(topic, partition); got >= leo {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("broker %d did not replicate %s-%d to %d", id, topic, partition, leo)
}

func TestBadProduceChangesNothing(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	c.CreateTopic("t", 1, 1, nil)
	leader := c.leaderOf("t", 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good := batchOf(t, "a")
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	cases := []struct {
		name  string
		topic string
		part  int32
		acks  int32
		batch []byte
		want  pb.ErrorCode
	}{
		{"corrupt", "t", 0, 1, bad, pb.ErrorCode_CORRUPT_MESSAGE},
		{"unknown topic", "nope", 0, 1, good, pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"unknown partition", "t", 9, 1, good, pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"bad acks", "t", 0, 2, good, pb.ErrorCode_INVALID_REQUIRED_ACKS},
		{"empty", "t", 0, 1, nil, pb.ErrorCode_CORRUPT_MESSAGE},
		{"truncated", "t", 0, 1, good[:30], pb.ErrorCode_CORRUPT_MESSAGE},
	}
	for _, tc := range cases {
		r, err := produce(ctx, c.client(leader), tc.topic, tc.part, tc.acks, tc.batch)
		if err != nil || r.ErrorCode != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, err, r, tc.want)
		}
	}
	if got := c.Broker(leader).LogEndOffset("t", 0); got != 0 {
		t.Fatalf("bad produces appended: log end %d", got)
	}
	// Fetch past the end is OFFSET_OUT_OF_RANGE; a leader epoch from the future is UNKNOWN_LEADER_EPOCH.
	resp, err := c.client(leader).Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, Topics: []*pb.FetchTopic{{Topic: "t",
		Partitions: []*pb.FetchPartition{{Partition: 0, FetchOffset: 5, CurrentLeaderEpoch: -1}, {Partition: 0, FetchOffset: 0, CurrentLeaderEpoch: 99}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := []pb.ErrorCode{resp.Topics[0].Partitions[0].ErrorCode, resp.Topics[0].Partitions[1].ErrorCode}; !slices.Equal(got, []pb.ErrorCode{pb.ErrorCode_OFFSET_OUT_OF_RANGE, pb.ErrorCode_UNKNOWN_LEADER_EPOCH}) {
		t.Fatalf("fetch errors %v", got)
	}
}
