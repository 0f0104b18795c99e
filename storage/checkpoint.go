package storage

// Checkpoint files: small text files that are replaced atomically.
//
// Kafka's layout, byte for byte, so a Kafka data directory's checkpoints read
// as ours and the other way round:
//
//	<version>\n          decimal, e.g. "0"
//	<count>\n            decimal number of entry lines that follow
//	<entry>\n            count times; the entry format belongs to the caller
//
// The offset checkpoints (recovery-point-offset-checkpoint,
// replication-offset-checkpoint, log-start-offset-checkpoint, one each per
// data directory) are version 0 with entries "topic partition offset":
//
//	0
//	2
//	orders 0 1200
//	orders 1 977
//
// A file is never written in place. WriteCheckpointFile writes <path>.tmp,
// fsyncs it, renames it over <path> and fsyncs the directory, so after a crash
// <path> holds either the old or the new content, never a mix; a leftover
// <path>.tmp is ignored by readers and overwritten by the next write.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// OffsetCheckpointVersion is the version line of the offset checkpoints.
// Part of the format: do not change.
const OffsetCheckpointVersion = 0

// checkpointTmpSuffix names the file a checkpoint is written to before it is
// renamed into place. Part of the format: do not change.
const checkpointTmpSuffix = ".tmp"

// syncFile is the fsync of a written temporary file; tests swap it to
// inject failures.
var syncFile = (*os.File).Sync

// WriteCheckpointFile atomically replaces the checkpoint at path with the
// given version and entry lines (see the layout above). A line must not
// contain '\n' or '\r'. When it returns nil the new content is durable. When
// it returns an error the file at path is unchanged (the old content, or
// still missing) — except when only the final directory fsync failed: then
// the new content is in place but its rename may not survive a power loss.
func WriteCheckpointFile(path string, version int, lines []string) error {
	var buf bytes.Buffer
	buf.WriteString(strconv.Itoa(version))
	buf.WriteByte('\n')
	buf.WriteString(strconv.Itoa(len(lines)))
	buf.WriteByte('\n')
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return fmt.Errorf("%w: %s: line %d contains a line break", ErrCorruptCheckpoint, path, i)
		}
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	return writeFileAtomic(path, buf.Bytes())
}

// writeFileAtomic writes data to path+".tmp", fsyncs it, renames it over path
// and fsyncs the directory. On failure before the rename the temporary file is
// removed and path is untouched.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp := path + checkpointTmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("storage: write checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the first error wins
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("storage: write checkpoint %s: %w", tmp, err)
	}
	if err = syncFile(f); err != nil {
		return fmt.Errorf("storage: fsync checkpoint %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("storage: close checkpoint %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("storage: rename checkpoint %s: %w", tmp, err)
	}
	// The new content is in place; a failed directory fsync only means the
	// rename may not survive a power loss, which the caller must hear about.
	if derr := syncDir(filepath.Dir(path)); derr != nil {
		return fmt.Errorf("storage: fsync directory of %s: %w", path, derr)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename or create in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}

// ReadCheckpointFile reads the checkpoint at path and returns its entry
// lines. A missing file returns (nil, nil): callers treat it as empty. (To
// tell a missing file from one with zero entries, os.Stat it.) A file whose
// version is not version, whose count line does not match the number of entry
// lines, or that is empty or not newline-separated text returns an error
// wrapping ErrCorruptCheckpoint. A final line without '\n' is accepted, as
// Kafka accepts it.
func ReadCheckpointFile(path string, version int) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read checkpoint: %w", err)
	}
	if len(data) > 0 && data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: %s: empty file", ErrCorruptCheckpoint, path)
	}
	all := strings.Split(string(data), "\n")
	if len(all) < 2 {
		return nil, fmt.Errorf("%w: %s: no count line", ErrCorruptCheckpoint, path)
	}
	v, err := strconv.Atoi(all[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: bad version line %q", ErrCorruptCheckpoint, path, all[0])
	}
	if v != version {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrCorruptCheckpoint, path, v, version)
	}
	n, err := strconv.Atoi(all[1])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: %s: bad count line %q", ErrCorruptCheckpoint, path, all[1])
	}
	lines := all[2:]
	if len(lines) != n {
		return nil, fmt.Errorf("%w: %s: count says %d entries, found %d", ErrCorruptCheckpoint, path, n, len(lines))
	}
	for i, l := range lines {
		if strings.Contains(l, "\r") {
			return nil, fmt.Errorf("%w: %s: entry %d contains '\\r'", ErrCorruptCheckpoint, path, i)
		}
	}
	return lines, nil
}

// TopicPartition names a partition in the offset checkpoints.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string {
	return tp.Topic + "-" + strconv.FormatInt(int64(tp.Partition), 10)
}

// validateCheckpointTopic rejects what the "topic partition offset" line
// format cannot carry: an empty topic or one containing white space.
func validateCheckpointTopic(tp TopicPartition) error {
	if tp.Topic == "" {
		return fmt.Errorf("%w: empty topic name", ErrCorruptCheckpoint)
	}
	if strings.IndexFunc(tp.Topic, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%w: topic name %q contains white space", ErrCorruptCheckpoint, tp.Topic)
	}
	if tp.Partition < 0 {
		return fmt.Errorf("%w: %s: negative partition", ErrCorruptCheckpoint, tp)
	}
	return nil
}

// WriteOffsetCheckpoint atomically writes an offset checkpoint (version 0,
// lines "topic partition offset" sorted by topic, then partition, so equal
// maps give equal files). A topic that is empty or contains white space, or a
// negative partition, is refused with ErrCorruptCheckpoint and nothing is
// written.
func WriteOffsetCheckpoint(path string, offsets map[TopicPartition]int64) error {
	tps := make([]TopicPartition, 0, len(offsets))
	for tp := range offsets {
		if err := validateCheckpointTopic(tp); err != nil {
			return fmt.Errorf("storage: write %s: %w", path, err)
		}
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	lines := make([]string, len(tps))
	for i, tp := range tps {
		lines[i] = tp.Topic + " " + strconv.FormatInt(int64(tp.Partition), 10) + " " +
			strconv.FormatInt(offsets[tp], 10)
	}
	return WriteCheckpointFile(path, OffsetCheckpointVersion, lines)
}

// ReadOffsetCheckpoint reads an offset checkpoint. A missing file returns an
// empty map and no error. A malformed line, a negative partition or a
// partition listed twice returns ErrCorruptCheckpoint.
func ReadOffsetCheckpoint(path string) (map[TopicPartition]int64, error) {
	lines, err := ReadCheckpointFile(path, OffsetCheckpointVersion)
	if err != nil {
		return nil, err
	}
	m := make(map[TopicPartition]int64, len(lines))
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: %s: entry %d %q: want \"topic partition offset\"", ErrCorruptCheckpoint, path, i, l)
		}
		p, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%w: %s: entry %d: bad partition %q", ErrCorruptCheckpoint, path, i, f[1])
		}
		off, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: entry %d: bad offset %q", ErrCorruptCheckpoint, path, i, f[2])
		}
		tp := TopicPartition{Topic: f[0], Partition: int32(p)}
		if _, dup := m[tp]; dup {
			return nil, fmt.Errorf("%w: %s: %s listed twice", ErrCorruptCheckpoint, path, tp)
		}
		m[tp] = off
	}
	return m, nil
}
