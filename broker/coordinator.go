package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stratalog/strata/broker/group"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// OffsetsTopic is the internal compacted topic that holds consumer groups'
// committed offsets and state.
const OffsetsTopic = "__consumer_offsets"

// GroupConfig configures the group coordinator.
type GroupConfig struct {
	group.Config
	// OffsetsTopicPartitions is offsets.topic.num.partitions (default 50).
	OffsetsTopicPartitions int32
	// OffsetsTopicReplicationFactor is offsets.topic.replication.factor
	// (default 3), capped at the number of registered brokers when the topic
	// is created.
	OffsetsTopicReplicationFactor int32
	// WriteTimeout bounds the wait for a coordinator write to replicate
	// (default 10 s).
	WriteTimeout time.Duration
}

func (c GroupConfig) withDefaults() GroupConfig {
	c.Config = c.Config.WithDefaults()
	if c.OffsetsTopicPartitions <= 0 {
		c.OffsetsTopicPartitions = 50
	}
	if c.OffsetsTopicReplicationFactor <= 0 {
		c.OffsetsTopicReplicationFactor = 3
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return c
}

// coordinator runs the group shards of the __consumer_offsets partitions
// this broker leads: a shard per partition, loaded from the partition's log
// when the broker becomes its leader (COORDINATOR_LOAD_IN_PROGRESS
// meanwhile) and retired when leadership moves.
type coordinator struct {
	b   *Broker
	cfg GroupConfig

	mu       sync.Mutex
	shards   map[int32]*coordShard
	creating time.Time // when this broker last asked for __consumer_offsets
}

type coordShard struct {
	shard *group.Shard
	p     *Partition
	epoch int32 // the leader epoch the shard was loaded in
}

func newCoordinator(b *Broker, cfg GroupConfig) *coordinator {
	return &coordinator{b: b, cfg: cfg.withDefaults(), shards: map[int32]*coordShard{}}
}

// onImage loads the shards of newly led offsets partitions and retires
// those led no more. It runs after the replica manager applied img.
func (c *coordinator) onImage(img *raftfsm.Image) {
	me := c.b.cfg.NodeID
	led := map[int32]int32{} // partition -> leader epoch
	if t := img.Topic(OffsetsTopic); t != nil {
		for i, ip := range t.Partitions() {
			if ip.Leader == me {
				led[int32(i)] = ip.LeaderEpoch
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cs := range c.shards {
		if epoch, ok := led[i]; !ok || epoch != cs.epoch {
			cs.shard.Unload()
			delete(c.shards, i)
		}
	}
	for i, epoch := range led {
		if c.shards[i] != nil {
			continue
		}
		p := c.b.replicas.get(OffsetsTopic, i)
		if p == nil {
			continue
		}
		cs := &coordShard{p: p, epoch: epoch}
		cs.shard = group.NewShard(i, c.cfg.Config, imageMetadata{c.b}, cs)
		c.shards[i] = cs
		c.b.wg.Add(1)
		go func() {
			defer c.b.wg.Done()
			c.load(cs)
		}()
	}
}

// load replays the partition's log into its shard.
func (c *coordinator) load(cs *coordShard) {
	start := time.Now()
	l := cs.p.Log()
	end := l.LogEndOffset()
	var it record.Iterator
	var n, bad int
	for off := l.LogStartOffset(); off < end; {
		if c.b.ctx.Err() != nil {
			return
		}
		r, err := l.Read(off, 1<<20)
		var buf []byte
		if err == nil {
			buf, err = r.Bytes(nil)
		}
		if err != nil {
			c.b.log.Error("group coordinator: load failed; this broker will not coordinate the partition's groups",
				"topic", OffsetsTopic, "partition", cs.shard.Partition(), "offset", off, "err", err)
			return
		}
		if len(buf) == 0 {
			break
		}
		for len(buf) > 0 {
			b, perr := record.Parse(buf)
			if perr != nil {
				break
			}
			buf = buf[len(b):]
			off = b.NextOffset()
			if b.IsControl() {
				continue
			}
			if err := it.Reset(b); err != nil {
				bad++
				continue
			}
			for it.Next() {
				rec := it.Record()
				if rec.Offset >= end {
					break
				}
				if err := cs.shard.Replay(rec.Key, rec.Value); err != nil {
					bad++
				}
				n++
			}
		}
	}
	cs.shard.Loaded()
	c.b.log.Info("group coordinator: loaded", "topic", OffsetsTopic, "partition", cs.shard.Partition(),
		"records", n, "skipped", bad, "took", time.Since(start).Round(time.Millisecond))
}

// Append writes a shard's records as one batch, as the leader of the epoch
// the shard was loaded in (group.Writer).
func (cs *coordShard) Append(recs []group.Record) (int64, error) {
	b, err := newBatch(func(bl *record.Builder) error {
		now := time.Now().UnixMilli()
		for _, r := range recs {
			if err := bl.Append(now, r.Key, r.Value, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	info, err := cs.p.AppendAsLeaderInEpoch(b, -1, cs.epoch)
	if err != nil {
		return -1, err
	}
	return info.LastOffset + 1, nil
}

// shardFor is the loaded shard coordinating group id on this broker.
func (c *coordinator) shardFor(id string) (*coordShard, error) {
	img := c.b.image.Load()
	t := img.Topic(OffsetsTopic)
	if t == nil || t.NumPartitions() == 0 {
		return nil, fmt.Errorf("%w: %s does not exist yet", group.ErrCoordinatorNotAvailable, OffsetsTopic)
	}
	i := partitionFor(id, int32(t.NumPartitions()))
	c.mu.Lock()
	cs := c.shards[i]
	c.mu.Unlock()
	if cs == nil {
		return nil, fmt.Errorf("%w: group %q is coordinated by the leader of %s-%d (broker %d)",
			group.ErrNotCoordinator, id, OffsetsTopic, i, t.Partition(i).Leader)
	}
	return cs, nil
}

// partitionFor is Kafka's choice of a group's offsets partition:
// abs(groupId.hashCode()) % partitions, with Java's String.hashCode over
// UTF-16 code units, so a group lands where Kafka would put it.
func partitionFor(id string, n int32) int32 {
	var h int32
	for _, r := range id {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return (h & 0x7fffffff) % n
}

// commit waits until a shard's write is replicated (the offsets
// partition's high watermark reaches next), through the produce purgatory.
func (c *coordinator) commit(ctx context.Context, cs *coordShard, next int64) error {
	if next < 0 {
		return nil
	}
	tp := storage.TopicPartition{Topic: OffsetsTopic, Partition: cs.shard.Partition()}
	res := &pb.ProducePartitionResult{}
	op := &delayedProduce{waits: []*produceWait{{p: cs.p, tp: tp, required: next, result: res}}, done: make(chan struct{})}
	c.b.svc.produces.TryCompleteElseWatch(op, []storage.TopicPartition{tp}, c.cfg.WriteTimeout)
	select {
	case <-op.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	switch res.ErrorCode {
	case pb.ErrorCode_NONE:
		return nil
	case pb.ErrorCode_NOT_LEADER_OR_FOLLOWER:
		return fmt.Errorf("%w: %s", group.ErrNotCoordinator, res.ErrorMessage)
	}
	return fmt.Errorf("%w: the write to %s did not replicate: %s", group.ErrCoordinatorNotAvailable, tp, res.ErrorMessage)
}

// expireLoop runs each shard's expiry (session and rebalance timeouts,
// offsets retention).
func (c *coordinator) expireLoop() {
	every := min(c.cfg.SessionTimeout/4, time.Second)
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.b.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		shards := make([]*coordShard, 0, len(c.shards))
		for _, cs := range c.shards {
			shards = append(shards, cs)
		}
		c.mu.Unlock()
		for _, cs := range shards {
			if _, err := cs.shard.Expire(); err != nil && !isStaleWrite(err) {
				c.b.log.Warn("group coordinator: expiry", "partition", cs.shard.Partition(), "err", err)
			}
		}
	}
}

func isStaleWrite(err error) bool { return codeOf(err) == pb.ErrorCode_NOT_LEADER_OR_FOLLOWER }

// imageMetadata is the coordinator's view of topics: the broker's image.
type imageMetadata struct{ b *Broker }

func (m imageMetadata) Version() int64 { return m.b.image.Load().Offset() }

func (m imageMetadata) Partitions(topic string) int32 {
	if t := m.b.image.Load().Topic(topic); t != nil {
		return int32(t.NumPartitions())
	}
	return 0
}

func (m imageMetadata) Topics() []string {
	var out []string
	m.b.image.Load().RangeTopics(func(t *raftfsm.Topic) bool {
		if t.Name() != OffsetsTopic {
			out = append(out, t.Name())
		}
		return true
	})
	return out
}
