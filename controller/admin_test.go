package controller_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/controller/controllertest"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TestBadInputsChangeNothing sends every admin (and broker) request a bad
// input: each gets its typed error and the metadata image stays byte for
// byte the same.
func TestBadInputsChangeNothing(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 3 * time.Second})
	c.MustActive()
	bs := startBrokers(t, c, 3)
	createTopic(t, c, "good", 3, 2)
	createTopic(t, c, "my_topic", 1, 1)
	img := activeImage(t, c)
	good := img.Topic("good")
	gid := good.ID().Bytes()
	p0 := good.Partition(0)
	leader := bs[p0.Leader-1]
	notLeader := p0.Replicas[1]
	if notLeader == p0.Leader {
		notLeader = p0.Replicas[0]
	}
	var outsider int32 = 1
	for outsider <= 3 && p0.IsReplica(outsider) {
		outsider++
	}

	create := func(ct ...*pb.CreatableTopic) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: ct})
			if err != nil {
				return 0, err
			}
			for _, x := range r.GetTopics() {
				if x.GetErrorCode() != pb.ErrorCode_NONE {
					return x.GetErrorCode(), nil
				}
			}
			return pb.ErrorCode_NONE, nil
		}
	}
	ct := func(name string, np, rf int32, cfg ...string) *pb.CreatableTopic {
		m := map[string]string{}
		for i := 0; i+1 < len(cfg); i += 2 {
			m[cfg[i]] = cfg[i+1]
		}
		return &pb.CreatableTopic{Name: name, NumPartitions: np, ReplicationFactor: rf, Configs: m}
	}
	assign := func(name string, as ...[]int32) *pb.CreatableTopic {
		t := &pb.CreatableTopic{Name: name, NumPartitions: -1, ReplicationFactor: -1}
		for i, a := range as {
			t.Assignments = append(t.Assignments, &pb.ReplicaAssignment{Partition: int32(i), BrokerIds: a})
		}
		return t
	}
	del := func(items ...*pb.DeleteTopicItem) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.DeleteTopics(ctx, &pb.DeleteTopicsRequest{Topics: items})
			if err != nil {
				return 0, err
			}
			return r.GetTopics()[0].GetErrorCode(), nil
		}
	}
	grow := func(name string, count int32, as ...[]int32) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			t := &pb.CreatePartitionsTopic{Name: name, Count: count}
			for _, a := range as {
				t.Assignments = append(t.Assignments, &pb.Int32List{Values: a})
			}
			r, err := cl.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Topics: []*pb.CreatePartitionsTopic{t}})
			if err != nil {
				return 0, err
			}
			return r.GetTopics()[0].GetErrorCode(), nil
		}
	}
	topicRes := pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC
	brokerRes := pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER
	alter := func(typ pb.ConfigResourceType, name string, ops ...*pb.AlterableConfig) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.AlterConfigs(ctx, &pb.AlterConfigsRequest{Resources: []*pb.AlterConfigsResource{{ResourceType: typ, ResourceName: name, Configs: ops}}})
			if err != nil {
				return 0, err
			}
			return r.GetResults()[0].GetErrorCode(), nil
		}
	}
	set := func(k, v string) *pb.AlterableConfig { return &pb.AlterableConfig{Key: k, Value: v} }
	describe := func(typ pb.ConfigResourceType, name string, keys ...string) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.DescribeConfigs(ctx, &pb.DescribeConfigsRequest{Resources: []*pb.DescribeConfigsResource{{ResourceType: typ, ResourceName: name, Keys: keys}}})
			if err != nil {
				return 0, err
			}
			return r.GetResults()[0].GetErrorCode(), nil
		}
	}
	elect := func(typ pb.ElectionType, topic string, parts ...int32) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.ElectLeaders(ctx, &pb.ElectLeadersRequest{ElectionType: typ, TopicPartitions: []*pb.TopicPartitions{{Topic: topic, Partitions: parts}}})
			if err != nil {
				return 0, err
			}
			return r.GetTopics()[0].GetPartitions()[0].GetErrorCode(), nil
		}
	}
	reassign := func(topic string, part int32, reps ...int32) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.AlterPartitionReassignments(ctx, &pb.AlterPartitionReassignmentsRequest{Topics: []*pb.ReassignableTopic{{
				Name: topic, Partitions: []*pb.ReassignablePartition{{Partition: part, Replicas: reps}}}}})
			if err != nil {
				return 0, err
			}
			return r.GetTopics()[0].GetPartitions()[0].GetErrorCode(), nil
		}
	}
	isr := func(ids ...int32) []*pb.IsrMember {
		var out []*pb.IsrMember
		for _, id := range ids {
			out = append(out, &pb.IsrMember{BrokerId: id, BrokerEpoch: -1})
		}
		return out
	}
	alterPart := func(broker int32, epoch int64, tid []byte, part, le, pe int32, members []*pb.IsrMember) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			r, err := cl.AlterPartition(ctx, &pb.AlterPartitionRequest{BrokerId: broker, BrokerEpoch: epoch, Topics: []*pb.AlterPartitionTopic{{
				TopicId: tid, Partitions: []*pb.AlterPartitionPartition{{Partition: part, LeaderEpoch: le, PartitionEpoch: pe, NewIsr: members}}}}})
			if err != nil {
				return 0, err
			}
			return r.GetTopics()[0].GetPartitions()[0].GetErrorCode(), nil
		}
	}
	le, pe, lid, lep := p0.LeaderEpoch, p0.PartitionEpoch, leader.ID, leader.Epoch()
	okISR := isr(p0.ISR...)
	unknownID := bytes.Repeat([]byte{7}, 16)
	inc := bytes.Repeat([]byte{9}, 16)
	register := func(req *pb.RegisterBrokerRequest) func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error) {
		return func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.RegisterBroker(ctx, req)
			return 0, err
		}
	}

	cases := []struct {
		name string
		call func(context.Context, pb.ControllerServiceClient) (pb.ErrorCode, error)
		want pb.ErrorCode
	}{
		{"create: empty name", create(ct("", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: dot", create(ct(".", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: dotdot", create(ct("..", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: slash", create(ct("a/b", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: space", create(ct("a b", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: unicode", create(ct("tópico", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: 250 chars", create(ct(strings.Repeat("a", 250), 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: reserved prefix", create(ct("__mine", 1, 1)), pb.ErrorCode_POLICY_VIOLATION},
		{"create: exists", create(ct("good", 1, 1)), pb.ErrorCode_TOPIC_ALREADY_EXISTS},
		{"create: collides", create(ct("my.topic", 1, 1)), pb.ErrorCode_INVALID_TOPIC_EXCEPTION},
		{"create: zero partitions", create(ct("n", 0, 1)), pb.ErrorCode_INVALID_PARTITIONS},
		{"create: negative partitions", create(ct("n", -5, 1)), pb.ErrorCode_INVALID_PARTITIONS},
		{"create: zero rf", create(ct("n", 1, 0)), pb.ErrorCode_INVALID_REPLICATION_FACTOR},
		{"create: rf above live brokers", create(ct("n", 1, 4)), pb.ErrorCode_INVALID_REPLICATION_FACTOR},
		{"create: unknown config", create(ct("n", 1, 1, "retention.msx", "1")), pb.ErrorCode_INVALID_CONFIG},
		{"create: retention.ms not a number", create(ct("n", 1, 1, "retention.ms", "abc")), pb.ErrorCode_INVALID_CONFIG},
		{"create: retention.ms below -1", create(ct("n", 1, 1, "retention.ms", "-2")), pb.ErrorCode_INVALID_CONFIG},
		{"create: segment.bytes too small", create(ct("n", 1, 1, "segment.bytes", "1")), pb.ErrorCode_INVALID_CONFIG},
		{"create: segment.bytes overflow", create(ct("n", 1, 1, "segment.bytes", "99999999999")), pb.ErrorCode_INVALID_CONFIG},
		{"create: min.insync.replicas 0", create(ct("n", 1, 1, "min.insync.replicas", "0")), pb.ErrorCode_INVALID_CONFIG},
		{"create: cleanup.policy", create(ct("n", 1, 1, "cleanup.policy", "delete,shred")), pb.ErrorCode_INVALID_CONFIG},
		{"create: unclean not bool", create(ct("n", 1, 1, "unclean.leader.election.enable", "yes")), pb.ErrorCode_INVALID_CONFIG},
		{"create: ratio above 1", create(ct("n", 1, 1, "min.cleanable.dirty.ratio", "1.5")), pb.ErrorCode_INVALID_CONFIG},
		{"create: assignment unknown broker", create(assign("n", []int32{1, 9})), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"create: assignment duplicate", create(assign("n", []int32{1, 1})), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"create: assignment uneven", create(assign("n", []int32{1, 2}, []int32{3})), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"create: assignment empty", create(assign("n", []int32{})), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"create: assignment and count", create(&pb.CreatableTopic{Name: "n", NumPartitions: 2, ReplicationFactor: -1,
			Assignments: []*pb.ReplicaAssignment{{Partition: 0, BrokerIds: []int32{1}}}}), pb.ErrorCode_INVALID_REQUEST},
		{"create: assignment gap", create(&pb.CreatableTopic{Name: "n", NumPartitions: -1, ReplicationFactor: -1,
			Assignments: []*pb.ReplicaAssignment{{Partition: 1, BrokerIds: []int32{1}}}}), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"create: same name twice", create(ct("n", 1, 1), ct("n", 1, 1)), pb.ErrorCode_INVALID_REQUEST},
		{"delete: unknown name", del(&pb.DeleteTopicItem{Name: "nope"}), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"delete: unknown id", del(&pb.DeleteTopicItem{TopicId: unknownID}), pb.ErrorCode_UNKNOWN_TOPIC_ID},
		{"delete: short id", del(&pb.DeleteTopicItem{TopicId: []byte{1, 2}}), pb.ErrorCode_INVALID_REQUEST},
		{"delete: nothing named", del(&pb.DeleteTopicItem{}), pb.ErrorCode_INVALID_REQUEST},
		{"delete: name and id", del(&pb.DeleteTopicItem{Name: "good", TopicId: gid}), pb.ErrorCode_INVALID_REQUEST},
		{"partitions: shrink", grow("good", 2), pb.ErrorCode_INVALID_PARTITIONS},
		{"partitions: same", grow("good", 3), pb.ErrorCode_INVALID_PARTITIONS},
		{"partitions: unknown topic", grow("nope", 5), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"partitions: assignment count", grow("good", 5, []int32{1, 2}), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"partitions: assignment rf", grow("good", 4, []int32{1}), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"partitions: assignment unknown broker", grow("good", 4, []int32{1, 8}), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"configs: unknown topic", alter(topicRes, "nope", set("retention.ms", "1")), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"configs: unknown key", alter(topicRes, "good", set("retention", "1")), pb.ErrorCode_INVALID_CONFIG},
		{"configs: bad value", alter(topicRes, "good", set("segment.bytes", "big")), pb.ErrorCode_INVALID_CONFIG},
		{"configs: one bad of two", alter(topicRes, "good", set("retention.ms", "1000"), set("segment.bytes", "-1")), pb.ErrorCode_INVALID_CONFIG},
		{"configs: append to non-list", alter(topicRes, "good", &pb.AlterableConfig{Key: "retention.ms", Op: pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND, Value: "1"}), pb.ErrorCode_INVALID_CONFIG},
		{"configs: append bad element", alter(topicRes, "good", &pb.AlterableConfig{Key: "cleanup.policy", Op: pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND, Value: "x"}), pb.ErrorCode_INVALID_CONFIG},
		{"configs: subtract to empty", alter(topicRes, "good", &pb.AlterableConfig{Key: "cleanup.policy", Op: pb.AlterConfigOp_ALTER_CONFIG_OP_SUBTRACT, Value: "delete"}), pb.ErrorCode_INVALID_CONFIG},
		{"configs: key twice", alter(topicRes, "good", set("retention.ms", "1"), set("retention.ms", "2")), pb.ErrorCode_INVALID_REQUEST},
		{"configs: no ops", alter(topicRes, "good"), pb.ErrorCode_INVALID_REQUEST},
		{"configs: bad op", alter(topicRes, "good", &pb.AlterableConfig{Key: "retention.ms", Op: 99, Value: "1"}), pb.ErrorCode_INVALID_REQUEST},
		{"configs: broker resource", alter(brokerRes, "x", set("num.partitions", "3")), pb.ErrorCode_INVALID_REQUEST},
		{"configs: broker resource padded", alter(brokerRes, "01", set("num.partitions", "3")), pb.ErrorCode_INVALID_REQUEST},
		{"configs: broker unknown key", alter(brokerRes, "", set("retention.ms", "3")), pb.ErrorCode_INVALID_CONFIG},
		{"configs: broker bad value", alter(brokerRes, "", set("num.partitions", "0")), pb.ErrorCode_INVALID_CONFIG},
		{"configs: resource type", alter(0, "good", set("retention.ms", "1")), pb.ErrorCode_INVALID_REQUEST},
		{"describe: unknown topic", describe(topicRes, "nope"), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"describe: unknown key", describe(topicRes, "good", "nope"), pb.ErrorCode_INVALID_CONFIG},
		{"describe: bad broker", describe(brokerRes, "-1"), pb.ErrorCode_INVALID_REQUEST},
		{"elect: unknown topic", elect(pb.ElectionType_ELECTION_TYPE_PREFERRED, "nope", 0), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"elect: unknown partition", elect(pb.ElectionType_ELECTION_TYPE_PREFERRED, "good", 7), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"elect: not needed", elect(pb.ElectionType_ELECTION_TYPE_PREFERRED, "good", 0), pb.ErrorCode_ELECTION_NOT_NEEDED},
		{"elect: unclean not needed", elect(pb.ElectionType_ELECTION_TYPE_UNCLEAN, "good", 0), pb.ErrorCode_ELECTION_NOT_NEEDED},
		{"elect: bad type", elect(7, "good", 0), pb.ErrorCode_INVALID_REQUEST},
		{"reassign: unknown topic", reassign("nope", 0, 1, 2), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"reassign: unknown partition", reassign("good", 9, 1, 2), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"reassign: duplicate replica", reassign("good", 0, 1, 1), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"reassign: unknown broker", reassign("good", 0, 1, 9), pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT},
		{"reassign: cancel nothing", reassign("good", 0), pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS},
		{"alter partition: stale broker epoch", alterPart(lid, lep-1, gid, 0, le, pe, okISR), pb.ErrorCode_STALE_BROKER_EPOCH},
		{"alter partition: unknown broker", alterPart(42, 1, gid, 0, le, pe, okISR), pb.ErrorCode_BROKER_ID_NOT_REGISTERED},
		{"alter partition: old leader epoch", alterPart(lid, lep, gid, 0, le-1, pe, okISR), pb.ErrorCode_FENCED_LEADER_EPOCH},
		{"alter partition: new leader epoch", alterPart(lid, lep, gid, 0, le+1, pe, okISR), pb.ErrorCode_FENCED_LEADER_EPOCH},
		{"alter partition: partition epoch", alterPart(lid, lep, gid, 0, le, pe+1, okISR), pb.ErrorCode_INVALID_UPDATE_VERSION},
		{"alter partition: not the leader", alterPart(notLeader, bs[notLeader-1].Epoch(), gid, 0, le, pe, okISR), pb.ErrorCode_NOT_LEADER_OR_FOLLOWER},
		{"alter partition: empty isr", alterPart(lid, lep, gid, 0, le, pe, nil), pb.ErrorCode_INVALID_REQUEST},
		{"alter partition: isr without leader", alterPart(lid, lep, gid, 0, le, pe, isr(notLeader)), pb.ErrorCode_INVALID_REQUEST},
		{"alter partition: non-replica", alterPart(lid, lep, gid, 0, le, pe, isr(append(p0.ISR, outsider)...)), pb.ErrorCode_INELIGIBLE_REPLICA},
		{"alter partition: duplicate member", alterPart(lid, lep, gid, 0, le, pe, isr(p0.Leader, p0.Leader)), pb.ErrorCode_INVALID_REQUEST},
		{"alter partition: unknown topic id", alterPart(lid, lep, unknownID, 0, le, pe, okISR), pb.ErrorCode_UNKNOWN_TOPIC_ID},
		{"alter partition: bad topic id", alterPart(lid, lep, []byte{1}, 0, le, pe, okISR), pb.ErrorCode_INVALID_REQUEST},
		{"alter partition: unknown partition", alterPart(lid, lep, gid, 9, le, pe, okISR), pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION},
		{"register: short incarnation", register(&pb.RegisterBrokerRequest{BrokerId: 5, IncarnationId: []byte{1}}), pb.ErrorCode_INVALID_REQUEST},
		{"register: negative id", register(&pb.RegisterBrokerRequest{BrokerId: -1, IncarnationId: inc}), pb.ErrorCode_INVALID_REQUEST},
		{"register: other cluster", register(&pb.RegisterBrokerRequest{BrokerId: 5, IncarnationId: inc, ClusterId: "other"}), pb.ErrorCode_INCONSISTENT_CLUSTER_ID},
		{"register: listener twice", register(&pb.RegisterBrokerRequest{BrokerId: 5, IncarnationId: inc,
			Listeners: []*pb.Listener{{Name: "A", Host: "h", Port: 1}, {Name: "A", Host: "h", Port: 2}}}), pb.ErrorCode_INVALID_REQUEST},
		{"register: bad port", register(&pb.RegisterBrokerRequest{BrokerId: 5, IncarnationId: inc,
			Listeners: []*pb.Listener{{Name: "A", Host: "h", Port: 70000}}}), pb.ErrorCode_INVALID_REQUEST},
		{"producer ids: unknown broker", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.AllocateProducerIds(ctx, &pb.AllocateProducerIdsRequest{BrokerId: 42, BrokerEpoch: 1})
			return 0, err
		}, pb.ErrorCode_BROKER_ID_NOT_REGISTERED},
		{"producer ids: stale epoch", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.AllocateProducerIds(ctx, &pb.AllocateProducerIdsRequest{BrokerId: lid, BrokerEpoch: lep + 100})
			return 0, err
		}, pb.ErrorCode_STALE_BROKER_EPOCH},
		{"fetch: negative offset", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{FromOffset: -1})
			return 0, err
		}, pb.ErrorCode_INVALID_REQUEST},
		{"add voter: bad address", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.AddVoter(ctx, &pb.AddVoterRequest{VoterId: 9, Address: "nowhere"})
			return 0, err
		}, pb.ErrorCode_INVALID_REQUEST},
		{"add voter: zero id", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.AddVoter(ctx, &pb.AddVoterRequest{VoterId: 0, Address: "127.0.0.1:1"})
			return 0, err
		}, pb.ErrorCode_INVALID_REQUEST},
		{"remove voter: unknown", func(ctx context.Context, cl pb.ControllerServiceClient) (pb.ErrorCode, error) {
			_, err := cl.RemoveVoter(ctx, &pb.RemoveVoterRequest{VoterId: 9})
			return 0, err
		}, pb.ErrorCode_VOTER_NOT_FOUND},
	}
	snapshot := func() []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(activeImage(t, c).ToProto())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t, 10*time.Second)
			var code pb.ErrorCode
			err := c.Call(ctx, func(cl pb.ControllerServiceClient) error {
				var err error
				code, err = tc.call(ctx, cl)
				return err
			})
			if err != nil {
				code = codeOf(err)
			}
			if code != tc.want {
				t.Fatalf("got %v (err %v), want %v", code, err, tc.want)
			}
			if after := snapshot(); !bytes.Equal(before, after) {
				t.Fatalf("the image changed")
			}
		})
	}
}

func TestAdminHappyPaths(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{SessionTimeout: 3 * time.Second})
	c.MustActive()
	bs := startBrokers(t, c, 3, "rack-a", "rack-b", "rack-c")
	ctx := ctxT(t, 20*time.Second)
	call := func(fn func(pb.ControllerServiceClient) error) {
		t.Helper()
		if err := c.Call(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	// validate_only writes nothing.
	off := activeImage(t, c).Offset()
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.CreateTopics(ctx, &pb.CreateTopicsRequest{ValidateOnly: true, Topics: []*pb.CreatableTopic{{Name: "v", NumPartitions: 3, ReplicationFactor: 3}}})
		if err == nil && (r.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE || r.GetTopics()[0].GetConfigs()["retention.ms"] != "604800000") {
			t.Fatalf("validate only: %v", r)
		}
		return err
	})
	if activeImage(t, c).Topic("v") != nil || activeImage(t, c).Offset() != off {
		t.Fatal("validate_only wrote")
	}
	// Rack-aware placement: RF 3 over 3 racks puts one replica per rack.
	first := createTopic(t, c, "t", 6, 3)
	for _, p := range activeImage(t, c).Topic("t").Partitions() {
		racks := map[string]bool{}
		for _, r := range p.Replicas {
			racks[activeImage(t, c).Broker(r).Rack] = true
		}
		if len(racks) != 3 {
			t.Fatalf("replicas %v not spread over racks", p.Replicas)
		}
	}
	// Configs: set, describe (source TOPIC), append to a list, delete.
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.AlterConfigs(ctx, &pb.AlterConfigsRequest{Resources: []*pb.AlterConfigsResource{{
			ResourceType: pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC, ResourceName: "t",
			Configs: []*pb.AlterableConfig{{Key: "retention.ms", Value: "1000"},
				{Key: "cleanup.policy", Op: pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND, Value: "compact"}}}}})
		if err == nil && r.GetResults()[0].GetErrorCode() != pb.ErrorCode_NONE {
			t.Fatalf("alter: %v", r)
		}
		return err
	})
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.DescribeConfigs(ctx, &pb.DescribeConfigsRequest{Resources: []*pb.DescribeConfigsResource{{
			ResourceType: pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC, ResourceName: "t", Keys: []string{"retention.ms", "cleanup.policy", "segment.bytes"}}}})
		if err != nil {
			return err
		}
		got := r.GetResults()[0].GetConfigs()
		if got[0].GetValue() != "1000" || got[0].GetSource() != pb.ConfigSource_CONFIG_SOURCE_TOPIC ||
			got[1].GetValue() != "delete,compact" || got[2].GetSource() != pb.ConfigSource_CONFIG_SOURCE_DEFAULT || got[2].GetType() != "int" {
			t.Fatalf("describe: %v", got)
		}
		return nil
	})
	// Cluster default changes the effective value of topics without an override.
	call(func(cl pb.ControllerServiceClient) error {
		_, err := cl.AlterConfigs(ctx, &pb.AlterConfigsRequest{Resources: []*pb.AlterConfigsResource{{
			ResourceType: pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER, ResourceName: "",
			Configs: []*pb.AlterableConfig{{Key: "log.segment.bytes", Value: "1048576"}, {Key: "num.partitions", Value: "2"}}}}})
		return err
	})
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.DescribeConfigs(ctx, &pb.DescribeConfigsRequest{Resources: []*pb.DescribeConfigsResource{{
			ResourceType: pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC, ResourceName: "t", Keys: []string{"segment.bytes"}}}})
		if err == nil && (r.GetResults()[0].GetConfigs()[0].GetValue() != "1048576" || r.GetResults()[0].GetConfigs()[0].GetSource() != pb.ConfigSource_CONFIG_SOURCE_CLUSTER_DEFAULT) {
			t.Fatalf("cluster default: %v", r)
		}
		return err
	})
	if r := createTopic(t, c, "defaults", -1, -1); r.GetNumPartitions() != 2 || r.GetReplicationFactor() != 1 {
		t.Fatalf("cluster default partitions: %v", r)
	}
	// Partitions grow.
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Topics: []*pb.CreatePartitionsTopic{{Name: "t", Count: 8}}})
		if err == nil && r.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE {
			t.Fatalf("grow: %v", r)
		}
		return err
	})
	if n := activeImage(t, c).Topic("t").NumPartitions(); n != 8 {
		t.Fatalf("partitions after grow: %d", n)
	}
	// Delete and re-create: a new topic id.
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.DeleteTopics(ctx, &pb.DeleteTopicsRequest{Topics: []*pb.DeleteTopicItem{{Name: "t"}}})
		if err == nil && r.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE {
			t.Fatalf("delete: %v", r)
		}
		return err
	})
	again := createTopic(t, c, "t", 1, 1)
	if bytes.Equal(again.GetTopicId(), first.GetTopicId()) {
		t.Fatal("re-created topic kept its id")
	}
	// Producer id blocks never overlap, across a failover too.
	alloc := func() int64 {
		var start int64
		call(func(cl pb.ControllerServiceClient) error {
			r, err := cl.AllocateProducerIds(ctx, &pb.AllocateProducerIdsRequest{BrokerId: 1, BrokerEpoch: bs[0].Epoch()})
			if err == nil && r.GetProducerIdLen() != 1000 {
				t.Fatalf("block of %d", r.GetProducerIdLen())
			}
			start = r.GetProducerIdStart()
			return err
		})
		return start
	}
	a1, a2 := alloc(), alloc()
	c.Stop(c.MustActive())
	a3 := alloc()
	if a2 != a1+1000 || a3 != a2+1000 {
		t.Fatalf("producer id blocks %d %d %d", a1, a2, a3)
	}
	// DescribeCluster from any node.
	call(func(cl pb.ControllerServiceClient) error {
		r, err := cl.DescribeCluster(ctx, &pb.DescribeClusterRequest{})
		if err == nil && (len(r.GetBrokers()) != 3 || r.GetClusterId() == "" || r.GetControllerId() < 1) {
			t.Fatalf("describe cluster: %v", r)
		}
		return err
	})
}
