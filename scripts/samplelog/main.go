// Command samplelog writes a small sample partition log with Strata's storage
// engine, for `make run` to dump: a few segments of batches in every codec,
// with keys, headers and a tombstone.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

func main() {
	dir := flag.String("dir", "data/sample", "data directory; the log goes to DIR/orders-0")
	flag.Parse()
	if err := run(filepath.Join(*dir, "orders-0")); err != nil {
		fmt.Fprintln(os.Stderr, "samplelog:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	cfg := storage.DefaultConfig()
	cfg.SegmentBytes = 1024 // small, so the sample has several segments
	cfg.IndexIntervalBytes = 512
	l, err := storage.Open(dir, cfg, storage.OpenOptions{})
	if err != nil {
		return err
	}
	codecs := []record.Codec{record.CodecNone, record.CodecGzip, record.CodecSnappy, record.CodecLZ4, record.CodecZstd}
	ts := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).UnixMilli()
	b := record.NewBuilder(record.BatchOptions{})
	for i := range 12 {
		b.Reset(record.BatchOptions{Codec: codecs[i%len(codecs)]})
		for j := range 5 {
			n := i*5 + j
			key := fmt.Appendf(nil, "order-%d", n%7)
			value := fmt.Appendf(nil, `{"order":%d,"amount":%d.%02d}`, n, 10+n, n%100)
			if n == 33 {
				value = nil // a tombstone
			}
			hdrs := []record.Header{{Key: "source", Value: []byte("samplelog")}}
			if err := b.Append(ts+int64(n)*1000, key, value, hdrs); err != nil {
				return err
			}
		}
		batch, err := b.Build()
		if err != nil {
			return err
		}
		if _, err := l.AppendAsLeader(batch, int32(1+i/6)); err != nil {
			return err
		}
	}
	if err := l.Flush(); err != nil {
		return err
	}
	fmt.Printf("wrote %s: offsets [%d, %d) in %d segments, %d bytes\n", dir, l.LogStartOffset(), l.LogEndOffset(), l.NumSegments(), l.Size())
	return l.Close()
}
