package controller

import (
	"maps"
	"slices"
	"strings"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// internalTopics may be created although their names start with "__".
var internalTopics = []string{"__consumer_offsets", "__transaction_state"}

// validateTopicName enforces Kafka's topic name rules: [a-zA-Z0-9._-],
// 1..249 characters, not "." or "..". Names starting "__" are reserved for
// the internal topics (POLICY_VIOLATION).
func validateTopicName(name string) error {
	if name == "" {
		return errorf(pb.ErrorCode_INVALID_TOPIC_EXCEPTION, "topic name is empty")
	}
	if name == "." || name == ".." {
		return errorf(pb.ErrorCode_INVALID_TOPIC_EXCEPTION, "topic name %q is not allowed", name)
	}
	if len(name) > raftfsm.MaxTopicNameLen {
		return errorf(pb.ErrorCode_INVALID_TOPIC_EXCEPTION, "topic name is %d characters, more than %d", len(name), raftfsm.MaxTopicNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errorf(pb.ErrorCode_INVALID_TOPIC_EXCEPTION, "topic name %q has the character %q (allowed: a-z A-Z 0-9 . _ -)", name, rune(c))
		}
	}
	if strings.HasPrefix(name, "__") && !slices.Contains(internalTopics, name) {
		return errorf(pb.ErrorCode_POLICY_VIOLATION, "topic names starting with \"__\" are reserved for internal topics")
	}
	return nil
}

// collisionName is the name with '.' replaced by '_': two topics whose
// collision names are equal would clash in metric names.
func collisionName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// createdTopic is what CreateTopics reports for a created (or validated) topic.
type createdTopic struct {
	id         raftfsm.TopicID
	partitions int32
	rf         int32
	configs    map[string]string // effective
}

// decideCreateTopic validates ct against the working image and adds the
// TopicRecord and PartitionRecords. id is the new topic's id.
func decideCreateTopic(t *txn, ct *pb.CreatableTopic, id raftfsm.TopicID) (*createdTopic, error) {
	name := ct.GetName()
	if err := validateTopicName(name); err != nil {
		return nil, err
	}
	img := t.img
	if img.Topic(name) != nil {
		return nil, errorf(pb.ErrorCode_TOPIC_ALREADY_EXISTS, "topic %q already exists", name)
	}
	cn := collisionName(name)
	var clash string
	img.RangeTopics(func(o *raftfsm.Topic) bool {
		if collisionName(o.Name()) == cn {
			clash = o.Name()
			return false
		}
		return true
	})
	if clash != "" {
		return nil, errorf(pb.ErrorCode_INVALID_TOPIC_EXCEPTION, "topic %q collides with existing topic %q ('.' and '_' are the same in metric names)", name, clash)
	}
	if err := validateTopicConfigs(ct.GetConfigs()); err != nil {
		return nil, err
	}
	var assign [][]int32
	var np, rf int32
	if len(ct.GetAssignments()) > 0 {
		if n := ct.GetNumPartitions(); n != -1 && n != 0 {
			return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "num_partitions %d with explicit assignments (want -1 or 0)", n)
		}
		if r := ct.GetReplicationFactor(); r != -1 && r != 0 {
			return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "replication_factor %d with explicit assignments (want -1 or 0)", r)
		}
		assign = make([][]int32, len(ct.GetAssignments()))
		for _, a := range ct.GetAssignments() {
			p := a.GetPartition()
			if p < 0 || int(p) >= len(assign) || assign[p] != nil {
				return nil, errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "assignments must name partitions 0..%d once each (got %d)", len(assign)-1, p)
			}
			if err := validateReplicaList(img, a.GetBrokerIds()); err != nil {
				return nil, err
			}
			assign[p] = a.GetBrokerIds()
		}
		for _, a := range assign {
			if len(a) != len(assign[0]) {
				return nil, errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "partitions have different replica counts")
			}
		}
		np, rf = int32(len(assign)), int32(len(assign[0]))
	} else {
		np, rf = ct.GetNumPartitions(), ct.GetReplicationFactor()
		if np == -1 {
			np = clusterInt(img, "num.partitions")
		}
		if rf == -1 {
			rf = clusterInt(img, "default.replication.factor")
		}
		if np <= 0 {
			return nil, errorf(pb.ErrorCode_INVALID_PARTITIONS, "number of partitions %d is not positive", np)
		}
		if rf <= 0 || rf > 32767 {
			return nil, errorf(pb.ErrorCode_INVALID_REPLICATION_FACTOR, "replication factor %d is not in [1, 32767]", rf)
		}
		if np > maxPartitionsPerRequest {
			return nil, errorf(pb.ErrorCode_INVALID_PARTITIONS, "number of partitions %d is more than %d", np, maxPartitionsPerRequest)
		}
		var err error
		if assign, err = placeReplicas(img, np, rf); err != nil {
			return nil, err
		}
	}
	if id.IsZero() {
		return nil, errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "zero topic id")
	}
	if img.TopicByID(id) != nil {
		return nil, errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "topic id %s in use", id)
	}
	recs := []*pb.MetadataRecord{{Record: &pb.MetadataRecord_Topic{Topic: &pb.TopicRecord{
		Name: name, TopicId: id.Bytes(), Configs: maps.Clone(ct.GetConfigs())}}}}
	for i, reps := range assign {
		recs = append(recs, newPartitionRecord(img, id, int32(i), reps))
	}
	if err := t.addAll(recs); err != nil {
		return nil, err
	}
	return &createdTopic{id: id, partitions: np, rf: rf, configs: effectiveTopicConfigs(t.img, t.img.Topic(name))}, nil
}

// maxPartitionsPerRequest bounds one request's new partitions.
const maxPartitionsPerRequest = 100000

// newPartitionRecord makes a new partition of replicas: the ISR is its
// eligible replicas, the leader the first of them. With no eligible replica
// the partition starts leaderless with the whole replica set as ISR.
func newPartitionRecord(img *raftfsm.Image, id raftfsm.TopicID, index int32, replicas []int32) *pb.MetadataRecord {
	s := pstate{Replicas: slices.Clone(replicas), Leader: raftfsm.NoLeader}
	for _, r := range replicas {
		if eligible(img, r) {
			s.ISR = append(s.ISR, r)
		}
	}
	if len(s.ISR) == 0 {
		s.ISR = slices.Clone(replicas)
	} else {
		s.Leader = s.ISR[0]
	}
	return partitionRecord(id, index, s)
}

// validateReplicaList: non-empty, distinct, registered brokers.
func validateReplicaList(img *raftfsm.Image, reps []int32) error {
	if len(reps) == 0 {
		return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "empty replica list")
	}
	for i, r := range reps {
		if slices.Contains(reps[:i], r) {
			return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "broker %d twice in %v", r, reps)
		}
		if img.Broker(r) == nil {
			return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "broker %d is not registered", r)
		}
	}
	return nil
}

// decideDeleteTopic removes the topic named by name or id (exactly one).
func decideDeleteTopic(t *txn, item *pb.DeleteTopicItem) (*raftfsm.Topic, error) {
	var tp *raftfsm.Topic
	switch {
	case item.GetName() != "" && len(item.GetTopicId()) > 0:
		return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "name both a topic and a topic id")
	case item.GetName() != "":
		if tp = t.img.Topic(item.GetName()); tp == nil {
			return nil, errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", item.GetName())
		}
	case len(item.GetTopicId()) > 0:
		id, err := raftfsm.TopicIDFromBytes(item.GetTopicId())
		if err != nil {
			return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "%v", err)
		}
		if tp = t.img.TopicByID(id); tp == nil {
			return nil, errorf(pb.ErrorCode_UNKNOWN_TOPIC_ID, "no topic with id %s", id)
		}
	default:
		return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "no topic name or id")
	}
	if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_RemoveTopic{RemoveTopic: &pb.RemoveTopicRecord{TopicId: tp.ID().Bytes()}}}); err != nil {
		return nil, err
	}
	return tp, nil
}

// decideCreatePartitions grows a topic to ct.Count partitions.
func decideCreatePartitions(t *txn, ct *pb.CreatePartitionsTopic) error {
	tp := t.img.Topic(ct.GetName())
	if tp == nil {
		return errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", ct.GetName())
	}
	cur := int32(tp.NumPartitions())
	if ct.GetCount() <= cur {
		return errorf(pb.ErrorCode_INVALID_PARTITIONS, "topic %q has %d partitions; partitions can only grow (asked %d)", ct.GetName(), cur, ct.GetCount())
	}
	add := ct.GetCount() - cur
	if add > maxPartitionsPerRequest {
		return errorf(pb.ErrorCode_INVALID_PARTITIONS, "adding %d partitions is more than %d", add, maxPartitionsPerRequest)
	}
	rf := int32(len(tp.Partition(0).TargetReplicas()))
	var assign [][]int32
	if len(ct.GetAssignments()) > 0 {
		if int32(len(ct.GetAssignments())) != add {
			return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "%d assignments for %d new partitions", len(ct.GetAssignments()), add)
		}
		for _, a := range ct.GetAssignments() {
			if err := validateReplicaList(t.img, a.GetValues()); err != nil {
				return err
			}
			if int32(len(a.GetValues())) != rf {
				return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "assignment %v has %d replicas, the topic's replication factor is %d", a.GetValues(), len(a.GetValues()), rf)
			}
			assign = append(assign, a.GetValues())
		}
	} else {
		var err error
		if assign, err = placeReplicas(t.img, add, rf); err != nil {
			return err
		}
	}
	recs := make([]*pb.MetadataRecord, 0, len(assign))
	for i, reps := range assign {
		recs = append(recs, newPartitionRecord(t.img, tp.ID(), cur+int32(i), reps))
	}
	return t.addAll(recs)
}

// effectiveTopicConfigs is every topic key's effective value for tp.
func effectiveTopicConfigs(img *raftfsm.Image, tp *raftfsm.Topic) map[string]string {
	out := make(map[string]string, len(topicConfigs))
	for k := range topicConfigs {
		out[k], _ = effectiveConfig(img, tp, k)
	}
	return out
}
