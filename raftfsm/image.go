package raftfsm

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// TopicID is a topic's 16-byte UUID. The all-zero id is never a valid topic.
type TopicID [16]byte

// TopicIDFromBytes converts a record's topic_id field.
func TopicIDFromBytes(b []byte) (TopicID, error) {
	var id TopicID
	if len(b) != len(id) {
		return id, fmt.Errorf("%w: topic id is %d bytes, want 16", ErrMalformed, len(b))
	}
	copy(id[:], b)
	if id.IsZero() {
		return id, fmt.Errorf("%w: topic id is all zero", ErrMalformed)
	}
	return id, nil
}

// ParseTopicID parses the canonical UUID text form (8-4-4-4-12 hex digits).
func ParseTopicID(s string) (TopicID, error) {
	var id TopicID
	raw := strings.ReplaceAll(s, "-", "")
	if len(raw) != 32 {
		return id, fmt.Errorf("%w: topic id %q is not a UUID", ErrMalformed, s)
	}
	if _, err := hex.Decode(id[:], []byte(raw)); err != nil {
		return id, fmt.Errorf("%w: topic id %q is not a UUID", ErrMalformed, s)
	}
	return id, nil
}

// Bytes returns a fresh 16-byte slice, as records carry it.
func (id TopicID) Bytes() []byte { b := id; return b[:] }

// IsZero reports whether id is all zero.
func (id TopicID) IsZero() bool { return id == TopicID{} }

// String formats id as a UUID.
func (id TopicID) String() string {
	h := hex.EncodeToString(id[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Listener is one named endpoint of a broker.
type Listener struct {
	Name string
	Host string
	Port int32
}

// Addr is host:port.
func (l Listener) Addr() string { return fmt.Sprintf("%s:%d", l.Host, l.Port) }

// Broker is a registered broker. Read-only: an image's Broker is shared with
// every later image and with every reader; never modify one or its slices.
type Broker struct {
	ID                   int32
	IncarnationID        []byte
	Epoch                int64
	Listeners            []Listener
	Rack                 string
	Fenced               bool
	InControlledShutdown bool
}

// Listener returns the listener of that name.
func (b *Broker) Listener(name string) (Listener, bool) {
	for _, l := range b.Listeners {
		if l.Name == name {
			return l, true
		}
	}
	return Listener{}, false
}

// NoLeader is Partition.Leader when the partition has no leader.
const NoLeader int32 = -1

// Partition is one partition's replica state. Read-only, like Broker. The
// four slices may share one backing array: never append to them.
//
// Layout: 4 slice headers + 3 int32 = 108 bytes, plus one backing array of
// int32 for all four lists (RF 3: ~24 bytes); no maps, no pointers to chase.
type Partition struct {
	// Replicas in preference order: Replicas[0] is the preferred leader.
	Replicas []int32
	ISR      []int32
	// During a reassignment: the target is Replicas minus Removing.
	Adding   []int32
	Removing []int32
	// NoLeader (-1) when no replica leads.
	Leader         int32
	LeaderEpoch    int32
	PartitionEpoch int32
}

// IsReassigning reports whether a reassignment is in progress.
func (p *Partition) IsReassigning() bool { return len(p.Adding) > 0 || len(p.Removing) > 0 }

// InISR reports whether broker is in the ISR.
func (p *Partition) InISR(broker int32) bool { return slices.Contains(p.ISR, broker) }

// IsReplica reports whether broker is a replica.
func (p *Partition) IsReplica(broker int32) bool { return slices.Contains(p.Replicas, broker) }

// TargetReplicas is Replicas minus Removing, in order (a fresh slice).
func (p *Partition) TargetReplicas() []int32 {
	out := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.Removing, r) {
			out = append(out, r)
		}
	}
	return out
}

// newPartition builds a Partition whose four lists share one backing array.
func newPartition(replicas, isr, adding, removing []int32, leader, leaderEpoch, partitionEpoch int32) *Partition {
	n := len(replicas) + len(isr) + len(adding) + len(removing)
	buf := make([]int32, 0, n)
	take := func(s []int32) []int32 {
		if len(s) == 0 {
			return nil
		}
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	return &Partition{
		Replicas:       take(replicas),
		ISR:            take(isr),
		Adding:         take(adding),
		Removing:       take(removing),
		Leader:         leader,
		LeaderEpoch:    leaderEpoch,
		PartitionEpoch: partitionEpoch,
	}
}

// Topic is a topic with its configs and partitions. Read-only, like Broker.
type Topic struct {
	name       string
	id         TopicID
	configs    map[string]string // never mutated once published
	partitions []*Partition      // index = partition number; never mutated once published
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// ID is the topic's id.
func (t *Topic) ID() TopicID { return t.id }

// NumPartitions is the partition count.
func (t *Topic) NumPartitions() int { return len(t.partitions) }

// Partition returns partition i, or nil when there is none.
func (t *Topic) Partition(i int32) *Partition {
	if i < 0 || int(i) >= len(t.partitions) {
		return nil
	}
	return t.partitions[i]
}

// Partitions returns the partitions by index. The slice is shared: do not modify it.
func (t *Topic) Partitions() []*Partition { return t.partitions }

// Config returns one topic-level config override.
func (t *Topic) Config(key string) (string, bool) {
	v, ok := t.configs[key]
	return v, ok
}

// Configs returns a copy of the topic-level config overrides.
func (t *Topic) Configs() map[string]string { return maps.Clone(t.configs) }

// ApplyError is a rejected batch as the image remembers it.
type ApplyError struct {
	Offset  int64
	Message string
}

// maxRecentErrors is how many rejected batches an image remembers.
const maxRecentErrors = 16

// Image is the metadata state at an offset. An Image is immutable once
// returned by Apply*, Replay* or FSM.Image: any number of goroutines may read
// it without locking. Each apply returns a new Image that shares every
// unchanged topic (and its partitions) with the old one.
//
// The zero Image is not usable; start from NewImage.
type Image struct {
	offset         int64
	clusterID      string
	brokers        map[int32]*Broker // copied whole on change: brokers are few
	topicsByName   pmap[string, *Topic]
	topicsByID     pmap[TopicID, *Topic]
	numPartitions  int
	brokerConfigs  map[string]map[string]string // copied on change
	nextProducerID int64
	features       map[string]int32 // copied on change
	errorCount     int64
	recentErrors   []ApplyError // oldest first; copied on change
}

// NewImage returns the empty image at offset 0.
func NewImage() *Image {
	return &Image{
		brokers:       map[int32]*Broker{},
		topicsByName:  newPmap[string, *Topic](hashString),
		topicsByID:    newPmap[TopicID, *Topic](hashTopicID),
		brokerConfigs: map[string]map[string]string{},
		features:      map[string]int32{},
	}
}

// Offset is the metadata offset (Raft index) of the last applied entry,
// including entries that were rejected. 0: nothing applied.
func (img *Image) Offset() int64 { return img.offset }

// ClusterID is the cluster id, "" until a ClusterIdRecord sets it.
func (img *Image) ClusterID() string { return img.clusterID }

// Broker returns a registered broker, or nil.
func (img *Image) Broker(id int32) *Broker { return img.brokers[id] }

// NumBrokers is the number of registered brokers.
func (img *Image) NumBrokers() int { return len(img.brokers) }

// Brokers returns the registered brokers sorted by id (a fresh slice).
func (img *Image) Brokers() []*Broker {
	out := make([]*Broker, 0, len(img.brokers))
	for _, b := range img.brokers {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *Broker) int { return int(a.ID) - int(b.ID) })
	return out
}

// Topic returns the topic of that name, or nil.
func (img *Image) Topic(name string) *Topic {
	t, _ := img.topicsByName.Get(name)
	return t
}

// TopicByID returns the topic of that id, or nil.
func (img *Image) TopicByID(id TopicID) *Topic {
	t, _ := img.topicsByID.Get(id)
	return t
}

// NumTopics is the number of topics.
func (img *Image) NumTopics() int { return img.topicsByName.Len() }

// NumPartitions is the number of partitions of all topics.
func (img *Image) NumPartitions() int { return img.numPartitions }

// Topics returns every topic sorted by name (a fresh slice; O(n log n)).
func (img *Image) Topics() []*Topic {
	out := make([]*Topic, 0, img.topicsByName.Len())
	img.topicsByName.Range(func(_ string, t *Topic) bool {
		out = append(out, t)
		return true
	})
	slices.SortFunc(out, func(a, b *Topic) int { return strings.Compare(a.name, b.name) })
	return out
}

// RangeTopics calls fn for every topic, in no particular order, until fn returns false.
func (img *Image) RangeTopics(fn func(*Topic) bool) {
	img.topicsByName.Range(func(_ string, t *Topic) bool { return fn(t) })
}

// BrokerConfig returns one broker config key; resource is the broker id in
// decimal, or "" for the cluster-wide default.
func (img *Image) BrokerConfig(resource, key string) (string, bool) {
	v, ok := img.brokerConfigs[resource][key]
	return v, ok
}

// BrokerConfigs returns a copy of the config keys of a broker resource.
func (img *Image) BrokerConfigs(resource string) map[string]string {
	return maps.Clone(img.brokerConfigs[resource])
}

// NextProducerID is the first producer id not yet allocated.
func (img *Image) NextProducerID() int64 { return img.nextProducerID }

// FeatureLevel returns a feature's level, 0 when unset.
func (img *Image) FeatureLevel(name string) int32 { return img.features[name] }

// Features returns a copy of the feature levels.
func (img *Image) Features() map[string]int32 { return maps.Clone(img.features) }

// ErrorCount is the number of batches rejected since the log began.
func (img *Image) ErrorCount() int64 { return img.errorCount }

// LastErrors returns the most recent rejected batches, oldest first (a fresh slice).
func (img *Image) LastErrors() []ApplyError { return slices.Clone(img.recentErrors) }
