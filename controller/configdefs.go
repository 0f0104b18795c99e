package controller

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// configType is the type of a config value, as DescribeConfigs names it.
type configType string

const (
	typeInt     configType = "int"
	typeLong    configType = "long"
	typeBool    configType = "boolean"
	typeString  configType = "string"
	typeDouble  configType = "double"
	typeList    configType = "list"
	typeUnknown configType = ""
)

// configDef defines one config key: its type, range, default and doc.
type configDef struct {
	key      string
	typ      configType
	def      string
	min, max float64  // numeric range, inclusive (ignored for non-numeric types)
	enum     []string // allowed values (for a list: allowed elements)
	doc      string
	// broker is the broker-level key that sets the cluster-wide default of a
	// topic key (log.retention.ms for retention.ms); "" when none.
	broker string
}

// validate checks v against d; the error says why.
func (d *configDef) validate(v string) error {
	switch d.typ {
	case typeInt, typeLong:
		bits := 64
		if d.typ == typeInt {
			bits = 32
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
		if err != nil {
			return fmt.Errorf("%s: %q is not a valid %s", d.key, v, d.typ)
		}
		if float64(n) < d.min || float64(n) > d.max {
			return fmt.Errorf("%s: %d out of range [%s, %s]", d.key, n, fmtBound(d.min), fmtBound(d.max))
		}
	case typeDouble:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) {
			return fmt.Errorf("%s: %q is not a valid double", d.key, v)
		}
		if f < d.min || f > d.max {
			return fmt.Errorf("%s: %v out of range [%v, %v]", d.key, f, d.min, d.max)
		}
	case typeBool:
		if v != "true" && v != "false" {
			return fmt.Errorf("%s: %q is not true or false", d.key, v)
		}
	case typeString:
		if len(d.enum) > 0 && !slices.Contains(d.enum, v) {
			return fmt.Errorf("%s: %q is not one of %s", d.key, v, strings.Join(d.enum, ", "))
		}
	case typeList:
		items := splitList(v)
		if len(items) == 0 {
			return fmt.Errorf("%s: empty list", d.key)
		}
		for _, it := range items {
			if len(d.enum) > 0 && !slices.Contains(d.enum, it) {
				return fmt.Errorf("%s: %q is not one of %s", d.key, it, strings.Join(d.enum, ", "))
			}
		}
		for i, it := range items {
			if slices.Contains(items[:i], it) {
				return fmt.Errorf("%s: %q twice", d.key, it)
			}
		}
	}
	return nil
}

func fmtBound(f float64) string {
	switch {
	case f >= math.MaxInt64:
		return "max"
	case f <= math.MinInt64:
		return "min"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

const (
	maxInt32 = math.MaxInt32
	maxInt64 = math.MaxInt64
)

// topicConfigs are the topic-level keys (Kafka's names and defaults).
var topicConfigs = defs(
	configDef{key: "cleanup.policy", typ: typeList, def: "delete", enum: []string{"delete", "compact"}, broker: "log.cleanup.policy",
		doc: "delete: drop old segments by retention; compact: keep the last record per key."},
	configDef{key: "compression.type", typ: typeString, def: "producer", enum: []string{"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"}, broker: "compression.type",
		doc: "Compression of stored batches; producer keeps what the producer sent."},
	configDef{key: "delete.retention.ms", typ: typeLong, def: "86400000", min: 0, max: maxInt64, broker: "log.cleaner.delete.retention.ms",
		doc: "How long tombstones are kept in a compacted topic."},
	configDef{key: "file.delete.delay.ms", typ: typeLong, def: "60000", min: 0, max: maxInt64, broker: "log.segment.delete.delay.ms",
		doc: "Delay before a deleted segment's files are removed."},
	configDef{key: "flush.messages", typ: typeLong, def: "9223372036854775807", min: 1, max: maxInt64, broker: "log.flush.interval.messages",
		doc: "Fsync after this many records."},
	configDef{key: "flush.ms", typ: typeLong, def: "9223372036854775807", min: 0, max: maxInt64, broker: "log.flush.interval.ms",
		doc: "Fsync after this long."},
	configDef{key: "index.interval.bytes", typ: typeInt, def: "4096", min: 0, max: maxInt32, broker: "log.index.interval.bytes",
		doc: "Bytes between offset index entries."},
	configDef{key: "max.compaction.lag.ms", typ: typeLong, def: "9223372036854775807", min: 1, max: maxInt64, broker: "log.cleaner.max.compaction.lag.ms",
		doc: "Longest a record stays uncompacted."},
	configDef{key: "max.message.bytes", typ: typeInt, def: "1048588", min: 0, max: maxInt32, broker: "message.max.bytes",
		doc: "Largest record batch accepted."},
	configDef{key: "message.timestamp.type", typ: typeString, def: "CreateTime", enum: []string{"CreateTime", "LogAppendTime"}, broker: "log.message.timestamp.type",
		doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append."},
	configDef{key: "min.cleanable.dirty.ratio", typ: typeDouble, def: "0.5", min: 0, max: 1, broker: "log.cleaner.min.cleanable.ratio",
		doc: "Dirty share of the log that triggers compaction."},
	configDef{key: "min.compaction.lag.ms", typ: typeLong, def: "0", min: 0, max: maxInt64, broker: "log.cleaner.min.compaction.lag.ms",
		doc: "Shortest time a record stays uncompacted."},
	configDef{key: "min.insync.replicas", typ: typeInt, def: "1", min: 1, max: maxInt32, broker: "min.insync.replicas",
		doc: "ISR size below which acks=all produce fails with NOT_ENOUGH_REPLICAS."},
	configDef{key: "preallocate", typ: typeBool, def: "false", broker: "log.preallocate",
		doc: "Preallocate segment files."},
	configDef{key: "retention.bytes", typ: typeLong, def: "-1", min: -1, max: maxInt64, broker: "log.retention.bytes",
		doc: "Size a partition's log is trimmed to; -1: no limit."},
	configDef{key: "retention.ms", typ: typeLong, def: "604800000", min: -1, max: maxInt64, broker: "log.retention.ms",
		doc: "Age after which segments are deleted; -1: no limit."},
	configDef{key: "segment.bytes", typ: typeInt, def: "1073741824", min: 14, max: maxInt32, broker: "log.segment.bytes",
		doc: "Size at which a segment is rolled."},
	configDef{key: "segment.index.bytes", typ: typeInt, def: "10485760", min: 4, max: maxInt32, broker: "log.index.size.max.bytes",
		doc: "Size of a segment's index files."},
	configDef{key: "segment.jitter.ms", typ: typeLong, def: "0", min: 0, max: maxInt64, broker: "log.roll.jitter.ms",
		doc: "Random jitter subtracted from segment.ms."},
	configDef{key: "segment.ms", typ: typeLong, def: "604800000", min: 1, max: maxInt64, broker: "log.roll.ms",
		doc: "Age at which a segment is rolled."},
	configDef{key: "unclean.leader.election.enable", typ: typeBool, def: "false", broker: "unclean.leader.election.enable",
		doc: "Elect a leader from outside the ISR when no ISR member is alive (may lose data)."},
)

// brokerOnlyConfigs are broker-level keys that are not a topic key's default.
var brokerOnlyConfigs = defs(
	configDef{key: "num.partitions", typ: typeInt, def: "1", min: 1, max: maxInt32,
		doc: "Partitions of a topic created without a count."},
	configDef{key: "default.replication.factor", typ: typeInt, def: "1", min: 1, max: math.MaxInt16,
		doc: "Replication factor of a topic created without one."},
	configDef{key: "replica.lag.time.max.ms", typ: typeLong, def: "30000", min: 0, max: maxInt64,
		doc: "A follower not caught up for this long leaves the ISR."},
	configDef{key: "auto.create.topics.enable", typ: typeBool, def: "false",
		doc: "Create unknown topics on first use."},
	configDef{key: "follower.replication.throttled.rate", typ: typeLong, def: "0", min: 0, max: maxInt64,
		doc: "Bytes/s cap on the replication traffic a broker fetches for partitions being reassigned to it; 0: none. Applied at once; overrides strata server --replication-throttle while set."},
)

// brokerConfigs maps every broker-level key to its def (topic defaults under
// their broker names included).
var brokerConfigs = func() map[string]*configDef {
	m := map[string]*configDef{}
	for k, d := range brokerOnlyConfigs {
		m[k] = d
	}
	for _, d := range topicConfigs {
		if d.broker != "" {
			bd := *d
			bd.key = d.broker
			m[d.broker] = &bd
		}
	}
	return m
}()

func defs(ds ...configDef) map[string]*configDef {
	m := make(map[string]*configDef, len(ds))
	for i := range ds {
		m[ds[i].key] = &ds[i]
	}
	return m
}

func sortedKeys(m map[string]*configDef) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// validateTopicConfigs checks every key and value of a topic's overrides.
func validateTopicConfigs(cfg map[string]string) error {
	for _, k := range sortedMapKeys(cfg) {
		d := topicConfigs[k]
		if d == nil {
			return errorf(pb.ErrorCode_INVALID_CONFIG, "unknown topic config %q", k)
		}
		if err := d.validate(cfg[k]); err != nil {
			return errorf(pb.ErrorCode_INVALID_CONFIG, "%v", err)
		}
	}
	return nil
}

func sortedMapKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// configSource says where an effective value comes from.
type configSource int

const (
	sourceDefault configSource = iota
	sourceTopic
	sourceBroker
	sourceClusterDefault
)

// effectiveConfig is the value of topic key for t: the topic's override, the
// cluster-wide broker default, or the static default. t may be nil (a topic
// being created: its overrides are not in the image yet).
func effectiveConfig(img *raftfsm.Image, t *raftfsm.Topic, key string) (string, configSource) {
	if t != nil {
		if v, ok := t.Config(key); ok {
			return v, sourceTopic
		}
	}
	d := topicConfigs[key]
	if d == nil {
		return "", sourceDefault
	}
	if d.broker != "" {
		if v, ok := img.BrokerConfig("", d.broker); ok {
			return v, sourceClusterDefault
		}
	}
	return d.def, sourceDefault
}

// clusterInt reads a broker-only int key's cluster-wide value.
func clusterInt(img *raftfsm.Image, key string) int32 {
	v, ok := img.BrokerConfig("", key)
	if !ok {
		v = brokerOnlyConfigs[key].def
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		n, _ = strconv.ParseInt(brokerOnlyConfigs[key].def, 10, 32)
	}
	return int32(n)
}
