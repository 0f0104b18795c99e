package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

type dumpLogOptions struct {
	records      bool
	verify       bool
	maxIndexSize int
}

func newDumpLogCmd() *cobra.Command {
	var o dumpLogOptions
	cmd := &cobra.Command{
		Use:   "dump-log PATH...",
		Short: "Print a segment's .log, .index or .timeindex file, or verify a partition directory",
		Long: `Print the contents of segment files, like kafka-dump-log:

  .log        one line per record batch (with --records, one more per record)
  .index      offset -> position entries
  .timeindex  timestamp -> offset entries

With --verify, check instead of print: every batch's framing and CRC-32C, dense
and increasing offsets, and that each index entry points at the batch it
names. A directory verifies every segment in it. The exit code is 2 when
damage is found, 1 on other errors.`,
		Example: `  strata dump-log --records data/logs/orders-0/00000000000000000000.log
  strata dump-log data/logs/orders-0/00000000000000000000.index
  strata dump-log --verify data/logs/orders-0`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			damaged := false
			for _, path := range args {
				var err error
				if o.verify {
					var ok bool
					ok, err = verifyPath(w, path, o.maxIndexSize)
					damaged = damaged || !ok
				} else {
					err = dumpPath(w, path, o)
				}
				if err != nil {
					return err
				}
			}
			if damaged {
				return errDamaged
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.records, "records", false, "print every record of each batch (keys and values)")
	cmd.Flags().BoolVar(&o.verify, "verify", false, "check CRCs, offsets and index consistency; exit 2 on damage")
	cmd.Flags().IntVar(&o.maxIndexSize, "max-index-size", storage.DefaultConfig().MaxIndexSize, "segment.index.bytes the indexes were written with")
	return cmd
}

// segmentBase parses the base offset from a segment file name.
func segmentBase(path string) (int64, string, error) {
	name := filepath.Base(path)
	dot := strings.IndexByte(name, '.')
	if dot < 0 {
		return 0, "", fmt.Errorf("%s: not a segment file (want NNNNNNNNNNNNNNNNNNNN.log, .index or .timeindex)", path)
	}
	base, err := strconv.ParseInt(name[:dot], 10, 64)
	if err != nil || base < 0 {
		return 0, "", fmt.Errorf("%s: not a segment file name: %q is not an offset", path, name[:dot])
	}
	return base, name[dot:], nil
}

func dumpPath(w io.Writer, path string, o dumpLogOptions) error {
	base, suffix, err := segmentBase(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Dumping %s\n", path)
	switch suffix {
	case storage.LogFileSuffix:
		return dumpLogFile(w, path, o.records)
	case storage.IndexFileSuffix:
		x, err := storage.OpenOffsetIndex(path, base, o.maxIndexSize, false)
		if err != nil {
			return err
		}
		defer x.Close()
		for i := range x.Entries() {
			off, pos := x.Entry(i)
			fmt.Fprintf(w, "offset: %d position: %d\n", off, pos)
		}
		return nil
	case storage.TimeIndexFileSuffix:
		x, err := storage.OpenTimeIndex(path, base, o.maxIndexSize, false)
		if err != nil {
			return err
		}
		defer x.Close()
		for i := range x.Entries() {
			ts, off := x.Entry(i)
			fmt.Fprintf(w, "timestamp: %d offset: %d\n", ts, off)
		}
		return nil
	}
	return fmt.Errorf("%s: unknown segment file kind %q", path, suffix)
}

func dumpLogFile(w io.Writer, path string, records bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var it record.Iterator
	end, damage, err := storage.ScanBatches(f, fi.Size(), func(pos int64, b record.Batch) error {
		ts := "CreateTime"
		if b.LogAppendTime() {
			ts = "LogAppendTime"
		}
		fmt.Fprintf(w, "baseOffset: %d lastOffset: %d count: %d baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: true\n",
			b.BaseOffset(), b.LastOffset(), b.RecordCount(), b.BaseSequence(), lastSequence(b), b.ProducerID(), b.ProducerEpoch(),
			b.PartitionLeaderEpoch(), b.IsTransactional(), b.IsControl(), pos, ts, b.MaxTimestamp(), len(b), b.Magic(), b.Codec(), b.CRC())
		if !records {
			return nil
		}
		if err := it.Reset(b); err != nil {
			return err
		}
		for it.Next() {
			r := it.Record()
			fmt.Fprintf(w, "| offset: %d %s: %d keySize: %d valueSize: %d headers: [", r.Offset, ts, r.Timestamp, lenOrNull(r.Key), lenOrNull(r.Value))
			first := true
			for k, v := range r.Headers() {
				if !first {
					fmt.Fprint(w, ", ")
				}
				first = false
				fmt.Fprintf(w, "%s=%s", k, printable(v))
			}
			fmt.Fprintf(w, "] key: %s payload: %s\n", printable(r.Key), printable(r.Value))
		}
		return it.Err()
	})
	if err != nil {
		return err
	}
	if damage != nil {
		fmt.Fprintf(w, "Found damage at position %d of %d: %v\n", end, fi.Size(), damage)
		return errDamaged
	}
	return nil
}

func lastSequence(b record.Batch) int32 {
	if b.BaseSequence() < 0 {
		return -1
	}
	return b.BaseSequence() + b.LastOffsetDelta()
}

func lenOrNull(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

// printable shows bytes as text when they are UTF-8 without control
// characters, else as hex; null shows as null.
func printable(b []byte) string {
	if b == nil {
		return "null"
	}
	if utf8.Valid(b) && !slices.ContainsFunc([]rune(string(b)), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("0x%x", b)
}

// verifyPath checks a .log file (and its indexes beside it) or every segment
// of a directory. ok is false when damage was found and reported.
func verifyPath(w io.Writer, path string, maxIndexSize int) (ok bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	var logs []string
	if fi.IsDir() {
		logs, err = filepath.Glob(filepath.Join(path, "*"+storage.LogFileSuffix))
		if err != nil {
			return false, err
		}
		slices.Sort(logs)
	} else {
		if _, suffix, err := segmentBase(path); err != nil {
			return false, err
		} else if suffix != storage.LogFileSuffix {
			path = strings.TrimSuffix(path, suffix) + storage.LogFileSuffix
		}
		logs = []string{path}
	}
	ok = true
	next := int64(-1)
	for _, p := range logs {
		rep, err := storage.VerifySegment(p, maxIndexSize, next)
		if err != nil {
			return false, err
		}
		next = rep.NextOffset
		status := "ok"
		if len(rep.Problems) > 0 {
			status = "DAMAGED"
			ok = false
		}
		fmt.Fprintf(w, "%s: %s: %d batches, %d records, offsets [%d, %d), %d bytes, %d index entries, %d time index entries\n",
			p, status, rep.Batches, rep.Records, rep.FirstOffset, rep.NextOffset, rep.ValidBytes, rep.IndexEntries, rep.TimeIndexEntries)
		for _, problem := range rep.Problems {
			fmt.Fprintf(w, "  %s\n", problem)
		}
	}
	if len(logs) == 0 {
		return false, errors.New(path + ": no .log files")
	}
	return ok, nil
}
