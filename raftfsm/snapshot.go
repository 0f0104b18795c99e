package raftfsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

// snapshotMarshal is the one way an image becomes bytes: deterministic, so
// the same image always gives the same bytes (maps in the messages are sorted
// by proto, and ToProto sorts every repeated field).
var snapshotMarshal = proto.MarshalOptions{Deterministic: true}

// ToProto converts the image to its snapshot message: brokers sorted by id,
// topics by name, configs and features by name. It is what Persist writes
// and what FetchMetadata sends a broker that is too far behind.
func (img *Image) ToProto() *stratav1.MetadataImage {
	m := &stratav1.MetadataImage{
		Offset:         img.offset,
		ClusterId:      img.clusterID,
		NextProducerId: img.nextProducerID,
		ErrorCount:     img.errorCount,
	}
	for _, b := range img.Brokers() {
		bi := &stratav1.BrokerImage{
			BrokerId:             b.ID,
			IncarnationId:        b.IncarnationID,
			BrokerEpoch:          b.Epoch,
			Rack:                 b.Rack,
			Fenced:               b.Fenced,
			InControlledShutdown: b.InControlledShutdown,
		}
		for _, l := range b.Listeners {
			bi.Listeners = append(bi.Listeners, &stratav1.Listener{Name: l.Name, Host: l.Host, Port: l.Port})
		}
		m.Brokers = append(m.Brokers, bi)
	}
	topics := img.Topics()
	m.Topics = make([]*stratav1.TopicImage, 0, len(topics))
	for _, t := range topics {
		ti := &stratav1.TopicImage{
			Name:       t.name,
			TopicId:    t.id.Bytes(),
			Configs:    configEntries(t.configs),
			Partitions: make([]*stratav1.PartitionImage, len(t.partitions)),
		}
		// One allocation for all of a topic's partition messages.
		pis := make([]stratav1.PartitionImage, len(t.partitions))
		for i, p := range t.partitions {
			pi := &pis[i]
			pi.Replicas = p.Replicas
			pi.Isr = p.ISR
			pi.Leader = p.Leader
			pi.LeaderEpoch = p.LeaderEpoch
			pi.PartitionEpoch = p.PartitionEpoch
			pi.AddingReplicas = p.Adding
			pi.RemovingReplicas = p.Removing
			ti.Partitions[i] = pi
		}
		m.Topics = append(m.Topics, ti)
	}
	for _, res := range sortedKeys(img.brokerConfigs) {
		m.BrokerConfigs = append(m.BrokerConfigs, &stratav1.BrokerConfigImage{
			ResourceName: res,
			Configs:      configEntries(img.brokerConfigs[res]),
		})
	}
	for _, name := range sortedKeys(img.features) {
		m.Features = append(m.Features, &stratav1.FeatureLevel{Name: name, Level: img.features[name]})
	}
	for _, e := range img.recentErrors {
		m.RecentErrors = append(m.RecentErrors, &stratav1.ApplyError{Offset: e.Offset, Message: e.Message})
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func configEntries(m map[string]string) []*stratav1.ConfigEntry {
	if len(m) == 0 {
		return nil
	}
	out := make([]*stratav1.ConfigEntry, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, &stratav1.ConfigEntry{Key: k, Value: m[k]})
	}
	return out
}

// MarshalSnapshot returns the image's snapshot bytes (deterministic).
func (img *Image) MarshalSnapshot() ([]byte, error) {
	return snapshotMarshal.Marshal(img.ToProto())
}

// UnmarshalSnapshot decodes snapshot bytes into an image. See FromProto.
func UnmarshalSnapshot(data []byte) (*Image, error) {
	var m stratav1.MetadataImage
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return FromProto(&m)
}

// FromProto builds an image from its snapshot message, checking the same
// rules Apply enforces (plus sortedness), so a corrupt snapshot is an error
// (wrapping ErrCorruptSnapshot), never a broken image. The image keeps no
// reference into m: m may be reused afterwards.
func FromProto(m *stratav1.MetadataImage) (*Image, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorruptSnapshot}, args...)...)
	}
	if m.GetOffset() < 0 {
		return nil, bad("offset %d < 0", m.GetOffset())
	}
	img := NewImage()
	img.offset = m.GetOffset()
	img.clusterID = m.GetClusterId()
	img.nextProducerID = m.GetNextProducerId()
	img.errorCount = m.GetErrorCount()

	prev := int32(-1)
	for _, bi := range m.GetBrokers() {
		if bi.GetBrokerId() <= prev {
			return nil, bad("brokers not sorted by id at broker %d", bi.GetBrokerId())
		}
		prev = bi.GetBrokerId()
		if len(bi.GetIncarnationId()) != 16 || bi.GetBrokerEpoch() < 0 {
			return nil, bad("broker %d: incarnation id of %d bytes, epoch %d", bi.GetBrokerId(), len(bi.GetIncarnationId()), bi.GetBrokerEpoch())
		}
		b := &Broker{
			ID:                   bi.GetBrokerId(),
			IncarnationID:        slices.Clone(bi.GetIncarnationId()),
			Epoch:                bi.GetBrokerEpoch(),
			Rack:                 bi.GetRack(),
			Fenced:               bi.GetFenced(),
			InControlledShutdown: bi.GetInControlledShutdown(),
		}
		for _, l := range bi.GetListeners() {
			b.Listeners = append(b.Listeners, Listener{Name: l.GetName(), Host: l.GetHost(), Port: l.GetPort()})
		}
		img.brokers[b.ID] = b
	}

	prevName := ""
	for i, ti := range m.GetTopics() {
		name := ti.GetName()
		if i > 0 && strings.Compare(name, prevName) <= 0 {
			return nil, bad("topics not sorted by name at %q", name)
		}
		prevName = name
		if name == "" || len(name) > MaxTopicNameLen {
			return nil, bad("topic name %q", name)
		}
		id, err := TopicIDFromBytes(ti.GetTopicId())
		if err != nil {
			return nil, bad("topic %q: %v", name, err)
		}
		if _, dup := img.topicsByID.Get(id); dup {
			return nil, bad("topic id %s twice", id)
		}
		t := &Topic{name: name, id: id, partitions: make([]*Partition, len(ti.GetPartitions()))}
		if len(ti.GetConfigs()) > 0 {
			t.configs = make(map[string]string, len(ti.GetConfigs()))
			for _, c := range ti.GetConfigs() {
				t.configs[c.GetKey()] = c.GetValue()
			}
		}
		// Partitions: one Partition array and one int32 array for the whole
		// topic, to keep restore fast and the heap small.
		ps := make([]Partition, len(ti.GetPartitions()))
		total := 0
		for _, pi := range ti.GetPartitions() {
			total += len(pi.GetReplicas()) + len(pi.GetIsr()) + len(pi.GetAddingReplicas()) + len(pi.GetRemovingReplicas())
		}
		buf := make([]int32, 0, total)
		take := func(s []int32) []int32 {
			if len(s) == 0 {
				return nil
			}
			start := len(buf)
			buf = append(buf, s...)
			return buf[start:len(buf):len(buf)]
		}
		for j, pi := range ti.GetPartitions() {
			p := &ps[j]
			p.Replicas = take(pi.GetReplicas())
			p.ISR = take(pi.GetIsr())
			p.Adding = take(pi.GetAddingReplicas())
			p.Removing = take(pi.GetRemovingReplicas())
			p.Leader = pi.GetLeader()
			p.LeaderEpoch = pi.GetLeaderEpoch()
			p.PartitionEpoch = pi.GetPartitionEpoch()
			if err := checkPartition(p, true); err != nil {
				return nil, bad("topic %q partition %d: %v", name, j, err)
			}
			t.partitions[j] = p
		}
		img.topicsByName = img.topicsByName.Set(name, t)
		img.topicsByID = img.topicsByID.Set(id, t)
		img.numPartitions += len(t.partitions)
	}

	for i, bc := range m.GetBrokerConfigs() {
		if i > 0 && bc.GetResourceName() <= m.GetBrokerConfigs()[i-1].GetResourceName() {
			return nil, bad("broker configs not sorted at %q", bc.GetResourceName())
		}
		set := make(map[string]string, len(bc.GetConfigs()))
		for _, c := range bc.GetConfigs() {
			set[c.GetKey()] = c.GetValue()
		}
		img.brokerConfigs[bc.GetResourceName()] = set
	}
	for i, f := range m.GetFeatures() {
		if f.GetName() == "" || f.GetLevel() <= 0 || (i > 0 && f.GetName() <= m.GetFeatures()[i-1].GetName()) {
			return nil, bad("feature %q level %d (empty, not positive or not sorted)", f.GetName(), f.GetLevel())
		}
		img.features[f.GetName()] = f.GetLevel()
	}
	for _, e := range m.GetRecentErrors() {
		img.recentErrors = append(img.recentErrors, ApplyError{Offset: e.GetOffset(), Message: e.GetMessage()})
	}
	return img, nil
}
