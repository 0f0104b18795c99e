package storage

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Config is a partition log's configuration. The names in the comments are the
// topic-level config keys, as Kafka spells them; FromTopicConfig reads them.
type Config struct {
	// SegmentBytes rolls the active segment when the next batch would pass it (segment.bytes).
	SegmentBytes int64
	// SegmentMs rolls the active segment once its first batch is this old (segment.ms).
	SegmentMs int64
	// IndexIntervalBytes is the number of log bytes between two index entries (index.interval.bytes).
	IndexIntervalBytes int64
	// MaxIndexSize is the size of each index file; a full index rolls the segment (segment.index.bytes).
	MaxIndexSize int
	// MaxBatchBytes is the largest batch Append accepts (max.message.bytes).
	MaxBatchBytes int
	// FlushMessages fsyncs after this many appended records; 0 leaves it to the page cache (flush.messages).
	FlushMessages int64
	// FlushMs fsyncs when the oldest unflushed append is this old; 0 never (flush.ms).
	// The log does not run a timer: Manager.Flush... or Log.MaybeFlush(now) applies it.
	FlushMs int64
	// RetentionMs deletes a sealed segment whose largest timestamp is older; -1 keeps forever (retention.ms).
	RetentionMs int64
	// RetentionBytes deletes the oldest segments while the log is larger; -1 no limit (retention.bytes).
	RetentionBytes int64
	// Compact keeps only the latest record per key in sealed segments (cleanup.policy=compact).
	Compact bool
	// Delete applies time and size retention (cleanup.policy=delete); both may be set.
	Delete bool
	// DeleteRetentionMs keeps tombstones this long after compaction first sees them (delete.retention.ms).
	DeleteRetentionMs int64
	// FileDeleteDelayMs is how long a deleted segment stays as .deleted before removal (file.delete.delay.ms).
	FileDeleteDelayMs int64
}

// DefaultConfig returns Kafka's defaults, except FileDeleteDelayMs which is
// shorter because readers hold a reference and never see a reused file.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		SegmentMs:          7 * 24 * int64(time.Hour/time.Millisecond),
		IndexIntervalBytes: 4096,
		MaxIndexSize:       10 << 20,
		MaxBatchBytes:      1048588,
		FlushMessages:      0,
		FlushMs:            0,
		RetentionMs:        7 * 24 * int64(time.Hour/time.Millisecond),
		RetentionBytes:     -1,
		Delete:             true,
		DeleteRetentionMs:  24 * int64(time.Hour/time.Millisecond),
		FileDeleteDelayMs:  1000,
	}
}

// Validate checks every value's range; the error wraps ErrInvalidConfig and
// names the Kafka key.
func (c Config) Validate() error {
	bad := func(key string, v any, want string) error {
		return fmt.Errorf("%w: %s=%v: %s", ErrInvalidConfig, key, v, want)
	}
	switch {
	case c.SegmentBytes < 1024 || c.SegmentBytes > math.MaxInt32:
		return bad("segment.bytes", c.SegmentBytes, "must be in [1024, 2147483647]")
	case c.SegmentMs < 1:
		return bad("segment.ms", c.SegmentMs, "must be >= 1")
	case c.IndexIntervalBytes < 0:
		return bad("index.interval.bytes", c.IndexIntervalBytes, "must be >= 0")
	case c.MaxIndexSize < 12*4:
		return bad("segment.index.bytes", c.MaxIndexSize, "must be >= 48")
	case c.MaxBatchBytes < 64:
		return bad("max.message.bytes", c.MaxBatchBytes, "must be >= 64")
	case c.FlushMessages < 0:
		return bad("flush.messages", c.FlushMessages, "must be >= 0")
	case c.FlushMs < 0:
		return bad("flush.ms", c.FlushMs, "must be >= 0")
	case c.RetentionMs < -1:
		return bad("retention.ms", c.RetentionMs, "must be >= -1")
	case c.RetentionBytes < -1:
		return bad("retention.bytes", c.RetentionBytes, "must be >= -1")
	case !c.Compact && !c.Delete:
		return bad("cleanup.policy", "", "must be delete, compact or both")
	case c.DeleteRetentionMs < 0:
		return bad("delete.retention.ms", c.DeleteRetentionMs, "must be >= 0")
	case c.FileDeleteDelayMs < 0:
		return bad("file.delete.delay.ms", c.FileDeleteDelayMs, "must be >= 0")
	}
	return nil
}

// FromTopicConfig overlays Kafka-named topic configs on c. Unknown keys are
// ignored (they belong to other layers); a known key with a bad value is an
// error wrapping ErrInvalidConfig, and c is returned unchanged.
func (c Config) FromTopicConfig(m map[string]string) (Config, error) {
	out := c
	ints := map[string]*int64{
		"segment.bytes":        &out.SegmentBytes,
		"segment.ms":           &out.SegmentMs,
		"index.interval.bytes": &out.IndexIntervalBytes,
		"flush.messages":       &out.FlushMessages,
		"flush.ms":             &out.FlushMs,
		"retention.ms":         &out.RetentionMs,
		"retention.bytes":      &out.RetentionBytes,
		"delete.retention.ms":  &out.DeleteRetentionMs,
		"file.delete.delay.ms": &out.FileDeleteDelayMs,
	}
	for key, v := range m {
		if p, ok := ints[key]; ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return c, fmt.Errorf("%w: %s=%q: not an integer", ErrInvalidConfig, key, v)
			}
			*p = n
			continue
		}
		switch key {
		case "segment.index.bytes", "max.message.bytes":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return c, fmt.Errorf("%w: %s=%q: not a 32-bit integer", ErrInvalidConfig, key, v)
			}
			if key == "segment.index.bytes" {
				out.MaxIndexSize = int(n)
			} else {
				out.MaxBatchBytes = int(n)
			}
		case "cleanup.policy":
			out.Compact, out.Delete = false, false
			for _, p := range strings.Split(v, ",") {
				switch strings.TrimSpace(p) {
				case "compact":
					out.Compact = true
				case "delete":
					out.Delete = true
				default:
					return c, fmt.Errorf("%w: cleanup.policy=%q: want delete, compact or compact,delete", ErrInvalidConfig, v)
				}
			}
		}
	}
	if err := out.Validate(); err != nil {
		return c, err
	}
	return out, nil
}
