package group

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Config configures a coordinator; WithDefaults fills in what is unset.
type Config struct {
	// SessionTimeout removes a member that has not heartbeated for this long
	// (group.consumer.session.timeout.ms; default 45 s).
	SessionTimeout time.Duration
	// HeartbeatInterval is what stable members are told
	// (group.consumer.heartbeat.interval.ms; default 5 s).
	HeartbeatInterval time.Duration
	// ReconcileHeartbeatInterval is what members that are still converging
	// on their assignment are told (default 250 ms), so that partitions move
	// as soon as their previous owner releases them.
	ReconcileHeartbeatInterval time.Duration
	// RebalanceTimeout is the default of how long a member may keep
	// partitions it must give up (default 5 min, Kafka's max.poll.interval.ms).
	RebalanceTimeout time.Duration
	// OffsetsRetention is how long an empty group's offsets are kept
	// (offsets.retention.ms; default 7 days).
	OffsetsRetention time.Duration
	// MaxGroupSize is group.max.size (default 1000).
	MaxGroupSize int
	// MaxMetadataBytes is offset.metadata.max.bytes (default 4096).
	MaxMetadataBytes int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// MaxIDBytes is the longest group, member or instance id accepted.
const MaxIDBytes = 255

func (c Config) WithDefaults() Config {
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 45 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.ReconcileHeartbeatInterval <= 0 {
		c.ReconcileHeartbeatInterval = 250 * time.Millisecond
	}
	if c.ReconcileHeartbeatInterval > c.HeartbeatInterval {
		c.ReconcileHeartbeatInterval = c.HeartbeatInterval
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 5 * time.Minute
	}
	if c.OffsetsRetention <= 0 {
		c.OffsetsRetention = 7 * 24 * time.Hour
	}
	if c.MaxGroupSize <= 0 {
		c.MaxGroupSize = 1000
	}
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Metadata is the coordinator's view of the cluster's topics.
type Metadata interface {
	// Version changes whenever topics or partition counts may have changed.
	Version() int64
	// Partitions is a topic's partition count, 0 when it does not exist.
	Partitions(topic string) int32
	// Topics lists every topic name.
	Topics() []string
}

// Writer appends a shard's records to its __consumer_offsets partition.
type Writer interface {
	// Append appends records (one batch) as the partition's leader and
	// answers the offset after the last: the operation is durable once the
	// partition's high watermark reaches it. It is called with the shard's
	// lock held, so the log's order is the order in which changes apply; it
	// must not wait for replication.
	Append(recs []Record) (next int64, err error)
}

// Shard is the coordinator of the groups of one __consumer_offsets
// partition. Every change is written as records first and applied to memory
// only once the append succeeded, through the same code that loads the
// partition's log on a new leader (apply): what a successor loads is what
// this one served. Methods answer, with their result, the offset the caller
// must see committed (high watermark) before answering a client; -1 when
// nothing was written.
type Shard struct {
	partition int32
	cfg       Config
	md        Metadata
	w         Writer

	mu     sync.Mutex
	loaded bool
	gone   bool // unloaded: another broker coordinates these groups now
	groups map[string]*group
}

// NewShard returns an unloaded shard: Replay the partition's log into it,
// then call Loaded. Until then every operation fails with ErrLoadInProgress.
func NewShard(partition int32, cfg Config, md Metadata, w Writer) *Shard {
	return &Shard{partition: partition, cfg: cfg.WithDefaults(), md: md, w: w, groups: map[string]*group{}}
}

// Partition is the shard's __consumer_offsets partition.
func (s *Shard) Partition() int32 { return s.partition }

// Replay applies one record of the partition's log (load). Records that do
// not decode are skipped and counted in the answer's error.
func (s *Shard) Replay(key, value []byte) error {
	k := &pb.GroupRecordKey{}
	if err := proto.Unmarshal(key, k); err != nil {
		return fmt.Errorf("group: undecodable key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(k, value, s.cfg.Now())
}

// Loaded marks the end of loading: the shard serves from now on.
func (s *Shard) Loaded() {
	s.mu.Lock()
	s.loaded = true
	s.mu.Unlock()
}

// write appends recs and applies them; nothing changes when the append fails.
func (s *Shard) write(recs []Record) (int64, error) {
	if len(recs) == 0 {
		return -1, nil
	}
	next, err := s.w.Append(recs)
	if err != nil {
		return -1, err
	}
	now := s.cfg.Now()
	for _, r := range recs {
		k := &pb.GroupRecordKey{}
		if err := proto.Unmarshal(r.Key, k); err != nil {
			panic(fmt.Sprintf("group: our own key does not decode: %v", err))
		}
		if err := s.apply(k, r.Value, now); err != nil {
			panic(fmt.Sprintf("group: our own record does not apply: %v", err))
		}
	}
	return next, nil
}

// Unload retires the shard (its partition's leadership moved): every
// operation fails with ErrNotCoordinator from now on.
func (s *Shard) Unload() {
	s.mu.Lock()
	s.gone, s.loaded = true, false
	s.groups = map[string]*group{}
	s.mu.Unlock()
}

func (s *Shard) ready() error {
	if s.gone {
		return ErrNotCoordinator
	}
	if !s.loaded {
		return ErrLoadInProgress
	}
	return nil
}

// ValidID checks a group, member or instance id.
func ValidID(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s id is empty", kind)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%s id is %d bytes; the limit is %d", kind, len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s id is not valid UTF-8", kind)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s id has a control character", kind)
		}
	}
	return nil
}

// lockServing validates a group id and takes the shard's lock if the shard
// serves; when it answers nil the caller holds s.mu and must unlock it.
func (s *Shard) lockServing(groupID string) error {
	if err := validGroupID(groupID); err != nil {
		return err
	}
	s.mu.Lock()
	if err := s.ready(); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

func validGroupID(id string) error {
	if err := ValidID("group", id); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidGroupID, err)
	}
	return nil
}

func newMemberID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// clone deep-copies a message: values in memory are never changed in place.
func clone[M proto.Message](m M) M { return proto.Clone(m).(M) }
