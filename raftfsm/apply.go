package raftfsm

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

// Sentinel errors. Test with errors.Is.
var (
	// ErrMalformed marks a record (or batch) that violates the metadata
	// rules: the batch is rejected and the image only records the error.
	ErrMalformed = errors.New("raftfsm: malformed record")
	// ErrStaleOffset is returned for a batch at or below the image's offset:
	// nothing is applied and nothing is recorded (a caller bug or a re-fetch).
	ErrStaleOffset = errors.New("raftfsm: offset not after the image's offset")
	// ErrCorruptSnapshot marks a snapshot that does not decode or violates the rules.
	ErrCorruptSnapshot = errors.New("raftfsm: corrupt snapshot")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// MaxTopicNameLen is the longest topic name the image accepts.
const MaxTopicNameLen = 249

// ApplyData decodes one Raft log entry's Data as a MetadataBatch and applies
// it at offset. Bytes that do not decode are a malformed batch.
func ApplyData(img *Image, offset int64, data []byte) (*Image, error) {
	if offset <= img.offset {
		return img, fmt.Errorf("%w: %d <= %d", ErrStaleOffset, offset, img.offset)
	}
	var batch stratav1.MetadataBatch
	if err := proto.Unmarshal(data, &batch); err != nil {
		err = fmt.Errorf("offset %d: %w: batch does not decode: %v", offset, ErrMalformed, err)
		return img.withError(offset, err), err
	}
	return ReplayRecords(img, offset, batch.GetRecords())
}

// ApplyBatch applies one batch at offset. See ReplayRecords.
func ApplyBatch(img *Image, offset int64, batch *stratav1.MetadataBatch) (*Image, error) {
	return ReplayRecords(img, offset, batch.GetRecords())
}

// ApplyRecord applies a batch of one record at offset. See ReplayRecords.
func ApplyRecord(img *Image, offset int64, rec *stratav1.MetadataRecord) (*Image, error) {
	return ReplayRecords(img, offset, []*stratav1.MetadataRecord{rec})
}

// ReplayRecords applies the records of one batch, all at offset, and returns
// the new image. It is the one code path of the controllers' FSM and of the
// brokers' replay: pure and deterministic, img is never modified.
//
// The batch is atomic. If any record is malformed, none is applied: the
// returned image is img with its offset moved to offset and the error
// recorded (ErrorCount, LastErrors), and the error (wrapping ErrMalformed) is
// returned too. Either way the returned image is the one to keep.
//
// If offset is not after img.Offset(), img and an ErrStaleOffset are returned.
func ReplayRecords(img *Image, offset int64, recs []*stratav1.MetadataRecord) (*Image, error) {
	if offset <= img.offset {
		return img, fmt.Errorf("%w: %d <= %d", ErrStaleOffset, offset, img.offset)
	}
	b := newBuilder(img)
	for i, r := range recs {
		if err := b.apply(r); err != nil {
			err = fmt.Errorf("offset %d record %d (%s): %w", offset, i, RecordKind(r), err)
			return img.withError(offset, err), err
		}
	}
	return b.finish(offset), nil
}

// Replay applies log entries in order, as a broker does with what
// FetchMetadata returns. Entries at or below the image's offset are skipped
// (a re-fetch). Rejected batches do not stop the replay: they are recorded in
// the image as the controllers recorded them, and returned joined. The
// returned image is always the one to keep.
func Replay(img *Image, entries ...*stratav1.MetadataLogEntry) (*Image, error) {
	var errs []error
	for _, e := range entries {
		if e.GetOffset() <= img.offset {
			continue
		}
		var err error
		img, err = ApplyBatch(img, e.GetOffset(), e.GetBatch())
		if err != nil {
			errs = append(errs, err)
		}
	}
	return img, errors.Join(errs...)
}

// RecordKind names a record's type as in the oneof ("partition_change"), for
// errors and logs.
func RecordKind(r *stratav1.MetadataRecord) string {
	switch r.GetRecord().(type) {
	case *stratav1.MetadataRecord_RegisterBroker:
		return "register_broker"
	case *stratav1.MetadataRecord_FenceBroker:
		return "fence_broker"
	case *stratav1.MetadataRecord_UnfenceBroker:
		return "unfence_broker"
	case *stratav1.MetadataRecord_UnregisterBroker:
		return "unregister_broker"
	case *stratav1.MetadataRecord_BrokerRegistrationChange:
		return "broker_registration_change"
	case *stratav1.MetadataRecord_Topic:
		return "topic"
	case *stratav1.MetadataRecord_RemoveTopic:
		return "remove_topic"
	case *stratav1.MetadataRecord_Config:
		return "config"
	case *stratav1.MetadataRecord_Partition:
		return "partition"
	case *stratav1.MetadataRecord_PartitionChange:
		return "partition_change"
	case *stratav1.MetadataRecord_ProducerIds:
		return "producer_ids"
	case *stratav1.MetadataRecord_FeatureLevel:
		return "feature_level"
	case *stratav1.MetadataRecord_ClusterId:
		return "cluster_id"
	default:
		return "unknown"
	}
}

// withError returns a copy of img at offset with err recorded.
func (img *Image) withError(offset int64, err error) *Image {
	out := *img
	out.offset = offset
	out.errorCount++
	keep := img.recentErrors
	if len(keep) >= maxRecentErrors {
		keep = keep[len(keep)-maxRecentErrors+1:]
	}
	out.recentErrors = make([]ApplyError, 0, len(keep)+1)
	out.recentErrors = append(out.recentErrors, keep...)
	out.recentErrors = append(out.recentErrors, ApplyError{Offset: offset, Message: err.Error()})
	return &out
}

// builder accumulates one batch's changes on a private copy of an image.
// Whatever it has copied ("owns") it may mutate in place; everything else is
// shared with the base image and must be copied before a change.
type builder struct {
	img                 Image
	ownBrokers          bool
	ownBrokerConfigs    bool
	ownFeatures         bool
	ownTopics           map[*Topic]bool // copied (or created) in this batch
	ownTopicConfigs     map[*Topic]bool // configs map copied in this batch
	ownBrokerConfigSets map[string]bool
}

func newBuilder(base *Image) *builder {
	return &builder{img: *base}
}

func (b *builder) finish(offset int64) *Image {
	out := b.img
	out.offset = offset
	return &out
}

func (b *builder) apply(r *stratav1.MetadataRecord) error {
	switch x := r.GetRecord().(type) {
	case *stratav1.MetadataRecord_RegisterBroker:
		return b.registerBroker(x.RegisterBroker)
	case *stratav1.MetadataRecord_FenceBroker:
		return b.changeBroker(x.FenceBroker.GetBrokerId(), x.FenceBroker.GetBrokerEpoch(), func(br *Broker) { br.Fenced = true })
	case *stratav1.MetadataRecord_UnfenceBroker:
		return b.changeBroker(x.UnfenceBroker.GetBrokerId(), x.UnfenceBroker.GetBrokerEpoch(), func(br *Broker) {
			br.Fenced = false
			br.InControlledShutdown = false
		})
	case *stratav1.MetadataRecord_BrokerRegistrationChange:
		c := x.BrokerRegistrationChange
		return b.changeBroker(c.GetBrokerId(), c.GetBrokerEpoch(), func(br *Broker) {
			if c.InControlledShutdown != nil {
				br.InControlledShutdown = c.GetInControlledShutdown()
			}
		})
	case *stratav1.MetadataRecord_UnregisterBroker:
		return b.unregisterBroker(x.UnregisterBroker)
	case *stratav1.MetadataRecord_Topic:
		return b.topic(x.Topic)
	case *stratav1.MetadataRecord_RemoveTopic:
		return b.removeTopic(x.RemoveTopic)
	case *stratav1.MetadataRecord_Config:
		return b.config(x.Config)
	case *stratav1.MetadataRecord_Partition:
		return b.partition(x.Partition)
	case *stratav1.MetadataRecord_PartitionChange:
		return b.partitionChange(x.PartitionChange)
	case *stratav1.MetadataRecord_ProducerIds:
		return b.producerIDs(x.ProducerIds)
	case *stratav1.MetadataRecord_FeatureLevel:
		return b.featureLevel(x.FeatureLevel)
	case *stratav1.MetadataRecord_ClusterId:
		return b.clusterID(x.ClusterId)
	default:
		return malformed("empty or unknown record type")
	}
}

// ---- brokers ----

func (b *builder) mutableBrokers() map[int32]*Broker {
	if !b.ownBrokers {
		b.img.brokers = maps.Clone(b.img.brokers)
		if b.img.brokers == nil {
			b.img.brokers = map[int32]*Broker{}
		}
		b.ownBrokers = true
	}
	return b.img.brokers
}

func (b *builder) registerBroker(r *stratav1.RegisterBrokerRecord) error {
	if r.GetBrokerId() < 0 {
		return malformed("broker id %d < 0", r.GetBrokerId())
	}
	if len(r.GetIncarnationId()) != 16 {
		return malformed("broker %d: incarnation id is %d bytes, want 16", r.GetBrokerId(), len(r.GetIncarnationId()))
	}
	if r.GetBrokerEpoch() < 0 {
		return malformed("broker %d: epoch %d < 0", r.GetBrokerId(), r.GetBrokerEpoch())
	}
	if old := b.img.brokers[r.GetBrokerId()]; old != nil && r.GetBrokerEpoch() <= old.Epoch {
		return malformed("broker %d: epoch %d not after current epoch %d", r.GetBrokerId(), r.GetBrokerEpoch(), old.Epoch)
	}
	ls := make([]Listener, 0, len(r.GetListeners()))
	for _, l := range r.GetListeners() {
		if l.GetName() == "" {
			return malformed("broker %d: listener without a name", r.GetBrokerId())
		}
		if l.GetPort() < 0 || l.GetPort() > 65535 {
			return malformed("broker %d: listener %s: port %d out of range", r.GetBrokerId(), l.GetName(), l.GetPort())
		}
		for _, o := range ls {
			if o.Name == l.GetName() {
				return malformed("broker %d: listener %s twice", r.GetBrokerId(), l.GetName())
			}
		}
		ls = append(ls, Listener{Name: l.GetName(), Host: l.GetHost(), Port: l.GetPort()})
	}
	b.mutableBrokers()[r.GetBrokerId()] = &Broker{
		ID:            r.GetBrokerId(),
		IncarnationID: slices.Clone(r.GetIncarnationId()),
		Epoch:         r.GetBrokerEpoch(),
		Listeners:     ls,
		Rack:          r.GetRack(),
		Fenced:        r.GetFenced(),
	}
	return nil
}

func (b *builder) currentBroker(id int32, epoch int64) (*Broker, error) {
	br := b.img.brokers[id]
	if br == nil {
		return nil, malformed("broker %d not registered", id)
	}
	if br.Epoch != epoch {
		return nil, malformed("broker %d: epoch %d is not the current epoch %d", id, epoch, br.Epoch)
	}
	return br, nil
}

func (b *builder) changeBroker(id int32, epoch int64, change func(*Broker)) error {
	br, err := b.currentBroker(id, epoch)
	if err != nil {
		return err
	}
	nb := *br
	change(&nb)
	b.mutableBrokers()[id] = &nb
	return nil
}

func (b *builder) unregisterBroker(r *stratav1.UnregisterBrokerRecord) error {
	if _, err := b.currentBroker(r.GetBrokerId(), r.GetBrokerEpoch()); err != nil {
		return err
	}
	delete(b.mutableBrokers(), r.GetBrokerId())
	return nil
}

// ---- topics ----

// mutableTopic returns a copy of t owned by this batch (t itself if already
// owned), installed in both indexes.
func (b *builder) mutableTopic(t *Topic) *Topic {
	if b.ownTopics[t] {
		return t
	}
	nt := &Topic{name: t.name, id: t.id, configs: t.configs, partitions: slices.Clone(t.partitions)}
	b.own(nt)
	return nt
}

func (b *builder) own(t *Topic) {
	if b.ownTopics == nil {
		b.ownTopics = map[*Topic]bool{}
	}
	b.ownTopics[t] = true
	b.img.topicsByName = b.img.topicsByName.Set(t.name, t)
	b.img.topicsByID = b.img.topicsByID.Set(t.id, t)
}

func (b *builder) topicByID(raw []byte) (*Topic, error) {
	id, err := TopicIDFromBytes(raw)
	if err != nil {
		return nil, err
	}
	t, ok := b.img.topicsByID.Get(id)
	if !ok {
		return nil, malformed("unknown topic id %s", id)
	}
	return t, nil
}

func (b *builder) topic(r *stratav1.TopicRecord) error {
	name := r.GetName()
	if name == "" || len(name) > MaxTopicNameLen {
		return malformed("topic name %q: empty or longer than %d", name, MaxTopicNameLen)
	}
	id, err := TopicIDFromBytes(r.GetTopicId())
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	if _, ok := b.img.topicsByName.Get(name); ok {
		return malformed("topic %q already exists", name)
	}
	if _, ok := b.img.topicsByID.Get(id); ok {
		return malformed("topic id %s already in use", id)
	}
	for k := range r.GetConfigs() {
		if k == "" {
			return malformed("topic %q: empty config key", name)
		}
	}
	t := &Topic{name: name, id: id, configs: maps.Clone(r.GetConfigs())}
	b.own(t)
	if b.ownTopicConfigs == nil {
		b.ownTopicConfigs = map[*Topic]bool{}
	}
	b.ownTopicConfigs[t] = true
	return nil
}

func (b *builder) removeTopic(r *stratav1.RemoveTopicRecord) error {
	t, err := b.topicByID(r.GetTopicId())
	if err != nil {
		return err
	}
	b.img.topicsByName = b.img.topicsByName.Delete(t.name)
	b.img.topicsByID = b.img.topicsByID.Delete(t.id)
	b.img.numPartitions -= len(t.partitions)
	delete(b.ownTopics, t)
	return nil
}

// ---- configs ----

func (b *builder) config(r *stratav1.ConfigRecord) error {
	if r.GetKey() == "" {
		return malformed("config: empty key")
	}
	switch r.GetResourceType() {
	case stratav1.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC:
		t, ok := b.img.topicsByName.Get(r.GetResourceName())
		if !ok {
			return malformed("config: unknown topic %q", r.GetResourceName())
		}
		t = b.mutableTopic(t)
		if !b.ownTopicConfigs[t] {
			t.configs = maps.Clone(t.configs)
			if b.ownTopicConfigs == nil {
				b.ownTopicConfigs = map[*Topic]bool{}
			}
			b.ownTopicConfigs[t] = true
		}
		if r.GetDelete() {
			delete(t.configs, r.GetKey())
		} else {
			if t.configs == nil {
				t.configs = map[string]string{}
			}
			t.configs[r.GetKey()] = r.GetValue()
		}
		return nil
	case stratav1.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER:
		res := r.GetResourceName()
		if res != "" {
			n, err := strconv.ParseInt(res, 10, 32)
			if err != nil || n < 0 || strconv.FormatInt(n, 10) != res {
				return malformed("config: broker resource %q is not a broker id", res)
			}
		}
		if !b.ownBrokerConfigs {
			b.img.brokerConfigs = maps.Clone(b.img.brokerConfigs)
			if b.img.brokerConfigs == nil {
				b.img.brokerConfigs = map[string]map[string]string{}
			}
			b.ownBrokerConfigs = true
		}
		if !b.ownBrokerConfigSets[res] {
			b.img.brokerConfigs[res] = maps.Clone(b.img.brokerConfigs[res])
			if b.ownBrokerConfigSets == nil {
				b.ownBrokerConfigSets = map[string]bool{}
			}
			b.ownBrokerConfigSets[res] = true
		}
		set := b.img.brokerConfigs[res]
		if r.GetDelete() {
			delete(set, r.GetKey())
			if len(set) == 0 {
				delete(b.img.brokerConfigs, res)
				delete(b.ownBrokerConfigSets, res)
			}
		} else {
			if set == nil {
				set = map[string]string{}
				b.img.brokerConfigs[res] = set
			}
			set[r.GetKey()] = r.GetValue()
		}
		return nil
	default:
		return malformed("config: resource type %v", r.GetResourceType())
	}
}

// ---- partitions ----

// checkPartition enforces the structural rules of a partition.
func checkPartition(p *Partition, allowEmptyISR bool) error {
	if len(p.Replicas) == 0 {
		return malformed("no replicas")
	}
	if err := checkIDs("replicas", p.Replicas, nil); err != nil {
		return err
	}
	if len(p.ISR) == 0 && !(allowEmptyISR && p.Leader == NoLeader) {
		return malformed("empty ISR")
	}
	if err := checkIDs("isr", p.ISR, p.Replicas); err != nil {
		return err
	}
	if err := checkIDs("adding replicas", p.Adding, p.Replicas); err != nil {
		return err
	}
	if err := checkIDs("removing replicas", p.Removing, p.Replicas); err != nil {
		return err
	}
	for _, r := range p.Adding {
		if slices.Contains(p.Removing, r) {
			return malformed("replica %d both adding and removing", r)
		}
	}
	if p.Leader != NoLeader && !slices.Contains(p.ISR, p.Leader) {
		return malformed("leader %d not in ISR %v", p.Leader, p.ISR)
	}
	if p.LeaderEpoch < 0 || p.PartitionEpoch < 0 {
		return malformed("negative epoch (leader %d, partition %d)", p.LeaderEpoch, p.PartitionEpoch)
	}
	return nil
}

// checkIDs: ids distinct, >= 0, and in within (if not nil).
func checkIDs(what string, ids, within []int32) error {
	for i, id := range ids {
		if id < 0 {
			return malformed("%s: broker id %d < 0", what, id)
		}
		if slices.Contains(ids[:i], id) {
			return malformed("%s: broker %d twice", what, id)
		}
		if within != nil && !slices.Contains(within, id) {
			return malformed("%s: broker %d is not a replica", what, id)
		}
	}
	return nil
}

func (b *builder) partition(r *stratav1.PartitionRecord) error {
	t, err := b.topicByID(r.GetTopicId())
	if err != nil {
		return fmt.Errorf("partition %d: %w", r.GetPartition(), err)
	}
	if int(r.GetPartition()) != len(t.partitions) {
		return malformed("topic %q: partition %d is not the next partition (%d)", t.name, r.GetPartition(), len(t.partitions))
	}
	p := newPartition(r.GetReplicas(), r.GetIsr(), r.GetAddingReplicas(), r.GetRemovingReplicas(),
		r.GetLeader(), r.GetLeaderEpoch(), r.GetPartitionEpoch())
	if err := checkPartition(p, false); err != nil {
		return fmt.Errorf("topic %q partition %d: %w", t.name, r.GetPartition(), err)
	}
	t = b.mutableTopic(t)
	t.partitions = append(t.partitions, p)
	b.img.numPartitions++
	return nil
}

// ChangedPartition computes the partition a PartitionChangeRecord makes of
// cur, and checks the epoch rules and the partition rules. The FSM applies
// exactly this; a controller may call it to validate a record before
// proposing it.
func ChangedPartition(cur *Partition, r *stratav1.PartitionChangeRecord) (*Partition, error) {
	replicas, isr, adding, removing := cur.Replicas, cur.ISR, cur.Adding, cur.Removing
	leader := cur.Leader
	if r.Replicas != nil {
		replicas = r.Replicas.GetValues()
	}
	if r.Isr != nil {
		isr = r.Isr.GetValues()
	}
	if r.AddingReplicas != nil {
		adding = r.AddingReplicas.GetValues()
	}
	if r.RemovingReplicas != nil {
		removing = r.RemovingReplicas.GetValues()
	}
	if r.Leader != nil {
		leader = r.GetLeader()
	}
	if r.GetPartitionEpoch() != cur.PartitionEpoch+1 {
		return nil, malformed("partition epoch %d, want %d", r.GetPartitionEpoch(), cur.PartitionEpoch+1)
	}
	switch le := r.GetLeaderEpoch(); {
	case leader != cur.Leader && le != cur.LeaderEpoch+1:
		return nil, malformed("leader change %d -> %d with leader epoch %d, want %d", cur.Leader, leader, le, cur.LeaderEpoch+1)
	case le != cur.LeaderEpoch && le != cur.LeaderEpoch+1:
		return nil, malformed("leader epoch %d, want %d or %d", le, cur.LeaderEpoch, cur.LeaderEpoch+1)
	}
	p := newPartition(replicas, isr, adding, removing, leader, r.GetLeaderEpoch(), r.GetPartitionEpoch())
	if err := checkPartition(p, true); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *builder) partitionChange(r *stratav1.PartitionChangeRecord) error {
	t, err := b.topicByID(r.GetTopicId())
	if err != nil {
		return fmt.Errorf("partition %d: %w", r.GetPartition(), err)
	}
	cur := t.Partition(r.GetPartition())
	if cur == nil {
		return malformed("topic %q has no partition %d", t.name, r.GetPartition())
	}
	p, err := ChangedPartition(cur, r)
	if err != nil {
		return fmt.Errorf("topic %q partition %d: %w", t.name, r.GetPartition(), err)
	}
	t = b.mutableTopic(t)
	t.partitions[r.GetPartition()] = p
	return nil
}

// ---- the rest ----

func (b *builder) producerIDs(r *stratav1.ProducerIdsRecord) error {
	if r.GetNextProducerId() <= b.img.nextProducerID {
		return malformed("next producer id %d not after %d", r.GetNextProducerId(), b.img.nextProducerID)
	}
	b.img.nextProducerID = r.GetNextProducerId()
	return nil
}

func (b *builder) featureLevel(r *stratav1.FeatureLevelRecord) error {
	if r.GetName() == "" {
		return malformed("feature without a name")
	}
	if r.GetLevel() < 0 {
		return malformed("feature %s: level %d < 0", r.GetName(), r.GetLevel())
	}
	if !b.ownFeatures {
		b.img.features = maps.Clone(b.img.features)
		if b.img.features == nil {
			b.img.features = map[string]int32{}
		}
		b.ownFeatures = true
	}
	if r.GetLevel() == 0 {
		delete(b.img.features, r.GetName())
	} else {
		b.img.features[r.GetName()] = r.GetLevel()
	}
	return nil
}

func (b *builder) clusterID(r *stratav1.ClusterIdRecord) error {
	if r.GetClusterId() == "" {
		return malformed("empty cluster id")
	}
	if b.img.clusterID != "" && b.img.clusterID != r.GetClusterId() {
		return malformed("cluster id %q, already %q", r.GetClusterId(), b.img.clusterID)
	}
	b.img.clusterID = r.GetClusterId()
	return nil
}
