package record

// Cross-checks against franz-go's kmsg, an independent implementation of the
// same format used by a production Kafka client. Batches built by kmsg (with
// the records compressed straight through the codec libraries, as franz-go
// and the Java client do) must read back through our Iterator; batches built
// by our Builder must read back through kmsg, decompressed straight through
// the codec libraries, field for field. Nothing here goes through our
// compression.go on the kmsg side.

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kcodec is one way a real client compresses a records section.
type kcodec struct {
	name  string
	codec Codec
	comp  func(t *testing.T, raw []byte) []byte
}

var kcodecs = []kcodec{
	{"none", CodecNone, func(_ *testing.T, raw []byte) []byte { return raw }},
	{"gzip", CodecGzip, func(t *testing.T, raw []byte) []byte {
		var buf bytes.Buffer
		w := stdgzip.NewWriter(&buf)
		mustWrite(t, w, raw)
		return buf.Bytes()
	}},
	{"gzip-two-members", CodecGzip, func(t *testing.T, raw []byte) []byte {
		// Legal gzip: a reader must concatenate members.
		var buf bytes.Buffer
		half := len(raw) / 2
		w := stdgzip.NewWriter(&buf)
		mustWrite(t, w, raw[:half])
		w = stdgzip.NewWriter(&buf)
		mustWrite(t, w, raw[half:])
		return buf.Bytes()
	}},
	{"snappy-raw", CodecSnappy, func(_ *testing.T, raw []byte) []byte { return s2.EncodeSnappy(nil, raw) }},
	{"snappy-xerial", CodecSnappy, func(_ *testing.T, raw []byte) []byte {
		// xerial.Encode frames as the Java client's SnappyOutputStream.
		return xerial.Encode(nil, raw)
	}},
	{"lz4-default", CodecLZ4, func(t *testing.T, raw []byte) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf) // franz-go's settings: 4 MiB blocks, content checksum
		mustWrite(t, w, raw)
		return buf.Bytes()
	}},
	{"lz4-64k-checksums", CodecLZ4, func(t *testing.T, raw []byte) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.BlockChecksumOption(true), lz4.SizeOption(uint64(len(raw)))); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, w, raw)
		return buf.Bytes()
	}},
	{"zstd-encodeall", CodecZstd, func(t *testing.T, raw []byte) []byte {
		enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(64<<10), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(raw, nil)
	}},
	{"zstd-stream", CodecZstd, func(t *testing.T, raw []byte) []byte {
		// A streamed frame carries no content size, as zstd-jni's stream writes.
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, enc, raw)
		return buf.Bytes()
	}},
}

func mustWrite(t *testing.T, w io.WriteCloser, p []byte) {
	t.Helper()
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// kdecompress decompresses a records section straight through the libraries.
func kdecompress(t *testing.T, c Codec, data []byte) []byte {
	t.Helper()
	switch c {
	case CodecNone:
		return data
	case CodecGzip:
		r, err := stdgzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecSnappy:
		out, err := xerial.Decode(data) // raw or xerial
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecLZ4:
		out, err := io.ReadAll(lz4.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecZstd:
		dec, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dec.Close()
		out, err := dec.DecodeAll(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("codec %v", c)
	return nil
}

// kbatch is a batch's header as the tests describe it.
type kbatch struct {
	baseOffset    int64
	leaderEpoch   int32
	attrs         int16 // flags other than the codec
	producerID    int64
	producerEpoch int16
	baseSequence  int32
	lastDelta     int32 // -1: the last record's
	baseTimestamp *int64
}

// kmsgRecords encodes recs with kmsg, deltas from recs' Offsets minus base.
func kmsgRecords(recs []tRecord, base, baseTS int64) []byte {
	var raw []byte
	for _, r := range recs {
		kr := kmsg.Record{
			TimestampDelta64: r.Timestamp - baseTS,
			OffsetDelta:      int32(r.Offset - base),
			Key:              r.Key,
			Value:            r.Value,
		}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		// Length is everything after itself: encode once to measure.
		body := kr.AppendTo(nil)
		_, n := binary.Varint(body) // the placeholder length, 0, is one byte
		kr.Length = int32(len(body) - n)
		raw = kr.AppendTo(raw)
	}
	return raw
}

// kmsgBatch builds a whole batch with kmsg around an already compressed
// records section, computing the length and CRC as a client does.
func kmsgBatch(h kbatch, codec Codec, recs []tRecord, section []byte) []byte {
	var baseTS, maxTS int64 = NoTimestamp, NoTimestamp
	if len(recs) > 0 {
		baseTS, maxTS = recs[0].Timestamp, recs[0].Timestamp
		for _, r := range recs {
			maxTS = max(maxTS, r.Timestamp)
		}
	}
	if h.baseTimestamp != nil {
		baseTS = *h.baseTimestamp
	}
	last := h.lastDelta
	if last < 0 && len(recs) > 0 {
		last = int32(recs[len(recs)-1].Offset - h.baseOffset)
	}
	kb := kmsg.RecordBatch{
		FirstOffset:          h.baseOffset,
		PartitionLeaderEpoch: h.leaderEpoch,
		Magic:                2,
		Attributes:           h.attrs | int16(codec),
		LastOffsetDelta:      last,
		FirstTimestamp:       baseTS,
		MaxTimestamp:         maxTS,
		ProducerID:           h.producerID,
		ProducerEpoch:        h.producerEpoch,
		FirstSequence:        h.baseSequence,
		NumRecords:           int32(len(recs)),
		Records:              section,
	}
	kb.Length = int32(HeaderSize - LogOverhead + len(section))
	out := kb.AppendTo(nil)
	crc := crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(out[17:], crc)
	return out
}

// kmsgCases are the record sets and headers both directions exercise.
func kmsgCases() []struct {
	name string
	h    kbatch
	recs []tRecord
} {
	ts := int64(1_732_000_000_000)
	i64 := func(v int64) *int64 { return &v }
	mixed := []tRecord{
		{Offset: 0, Timestamp: ts, Key: []byte("user-1"), Value: []byte(`{"a":1}`)},
		{Offset: 1, Timestamp: ts + 5, Key: nil, Value: []byte("no key")},
		{Offset: 2, Timestamp: ts - 3, Key: []byte("user-1"), Value: nil}, // tombstone, earlier clock
		{Offset: 3, Timestamp: ts + 1, Key: []byte{}, Value: []byte{}},
		{Offset: 4, Timestamp: ts + 2, Key: []byte("h"), Value: []byte("with headers"), Headers: []Header{
			{Key: "content-type", Value: []byte("application/json")},
			{Key: "null-value", Value: nil},
			{Key: "empty-value", Value: []byte{}},
			{Key: "", Value: []byte("empty key")},
			{Key: "binary", Value: []byte{0, 0xff, 0x80, 0x7f}},
		}},
		{Offset: 5, Timestamp: ts + 1<<40, Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("value "), 5000)},
	}
	var many []tRecord
	for i := range 500 {
		r := tRecord{Offset: int64(i), Timestamp: ts + int64(i), Key: fmt.Appendf(nil, "k%d", i%9),
			Value: fmt.Appendf(nil, "payload %d %s", i, bytes.Repeat([]byte{byte('a' + i%26)}, i%300))}
		if i%13 == 0 {
			r.Headers = []Header{{Key: "i", Value: fmt.Appendf(nil, "%d", i)}}
		}
		many = append(many, r)
	}
	compacted := []tRecord{
		{Offset: 2, Timestamp: ts + 2, Key: []byte("a"), Value: []byte("2")},
		{Offset: 7, Timestamp: ts + 7, Key: []byte("b"), Value: nil},
	}
	return []struct {
		name string
		h    kbatch
		recs []tRecord
	}{
		{"plain", kbatch{leaderEpoch: -1, producerID: -1, producerEpoch: -1, baseSequence: -1, lastDelta: -1}, mixed},
		{"idempotent", kbatch{leaderEpoch: 4, producerID: 1234567890123, producerEpoch: 17, baseSequence: 99, lastDelta: -1}, mixed},
		{"transactional", kbatch{leaderEpoch: 9, attrs: AttrTransactional, producerID: 77, producerEpoch: 3, baseSequence: 0, lastDelta: -1}, many},
		{"control", kbatch{attrs: AttrTransactional | AttrControl, producerID: 77, producerEpoch: 3, baseSequence: -1, lastDelta: -1},
			[]tRecord{{Offset: 0, Timestamp: ts, Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 5}}}},
		{"compacted", kbatch{baseOffset: 0, producerID: 5, producerEpoch: 1, baseSequence: 40, lastDelta: 9,
			attrs: AttrDeleteHorizon, baseTimestamp: i64(ts + 100)}, compacted},
	}
}

// Batches a Kafka client builds read back through our Iterator.
func TestKmsgToIterator(t *testing.T) {
	var it Iterator
	for _, tc := range kmsgCases() {
		for _, kc := range kcodecs {
			t.Run(tc.name+"/"+kc.name, func(t *testing.T) {
				baseTS := tc.recs[0].Timestamp
				if tc.h.baseTimestamp != nil {
					baseTS = *tc.h.baseTimestamp
				}
				section := kc.comp(t, kmsgRecords(tc.recs, tc.h.baseOffset, baseTS))
				b := Batch(kmsgBatch(tc.h, kc.codec, tc.recs, section))
				if err := b.Validate(); err != nil {
					t.Fatal(err)
				}
				b.SetBaseOffset(5000) // as a leader would; the CRC stays valid
				if err := b.Validate(); err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, &it, b)
				if err != nil {
					t.Fatal(err)
				}
				want := append([]tRecord(nil), tc.recs...)
				for i := range want {
					want[i].Offset += 5000
				}
				recordsEqual(t, got, want)
				if b.Codec() != kc.codec || b.ProducerID() != tc.h.producerID || b.ProducerEpoch() != tc.h.producerEpoch ||
					b.BaseSequence() != tc.h.baseSequence || b.PartitionLeaderEpoch() != tc.h.leaderEpoch ||
					b.IsTransactional() != (tc.h.attrs&AttrTransactional != 0) || b.IsControl() != (tc.h.attrs&AttrControl != 0) {
					t.Errorf("header fields differ from what kmsg wrote: %+v", OptionsOf(b))
				}
			})
		}
	}
}

// buildOurs builds tc with our Builder.
func buildOurs(t *testing.T, bld *Builder, h kbatch, codec Codec, recs []tRecord) Batch {
	t.Helper()
	bld.Reset(BatchOptions{
		Codec:                codec,
		Idempotent:           h.producerID != -1 || h.producerEpoch != -1 || h.baseSequence != -1,
		ProducerID:           h.producerID,
		ProducerEpoch:        h.producerEpoch,
		BaseSequence:         h.baseSequence,
		Transactional:        h.attrs&AttrTransactional != 0,
		Control:              h.attrs&AttrControl != 0,
		PartitionLeaderEpoch: h.leaderEpoch,
	})
	if h.baseTimestamp != nil {
		if h.attrs&AttrDeleteHorizon != 0 {
			must(t, bld.SetDeleteHorizon(*h.baseTimestamp))
		} else {
			must(t, bld.SetBaseTimestamp(*h.baseTimestamp))
		}
	}
	for _, r := range recs {
		must(t, bld.AppendAt(int32(r.Offset-h.baseOffset), r.Timestamp, r.Key, r.Value, r.Headers))
	}
	if h.lastDelta >= 0 {
		must(t, bld.SetLastOffsetDelta(h.lastDelta))
	}
	b, err := bld.Build()
	must(t, err)
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Batches our Builder writes read back through kmsg, every field.
func TestBuilderToKmsg(t *testing.T) {
	bld := NewBuilder(BatchOptions{})
	for _, tc := range kmsgCases() {
		for _, codec := range allCodecs {
			t.Run(tc.name+"/"+codec.String(), func(t *testing.T) {
				b := buildOurs(t, bld, tc.h, codec, tc.recs)
				b.SetBaseOffset(1 << 33)

				var kb kmsg.RecordBatch
				must(t, kb.ReadFrom(b))
				wantLast := tc.h.lastDelta
				if wantLast < 0 {
					wantLast = int32(tc.recs[len(tc.recs)-1].Offset - tc.h.baseOffset)
				}
				baseTS, maxTS := tc.recs[0].Timestamp, tc.recs[0].Timestamp
				for _, r := range tc.recs {
					maxTS = max(maxTS, r.Timestamp)
				}
				if tc.h.baseTimestamp != nil {
					baseTS = *tc.h.baseTimestamp
				}
				fields := []struct {
					name      string
					got, want int64
				}{
					{"FirstOffset", kb.FirstOffset, 1 << 33},
					{"Length", int64(kb.Length), int64(len(b) - LogOverhead)},
					{"PartitionLeaderEpoch", int64(kb.PartitionLeaderEpoch), int64(tc.h.leaderEpoch)},
					{"Magic", int64(kb.Magic), 2},
					{"CRC", int64(uint32(kb.CRC)), int64(crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))},
					{"Attributes", int64(kb.Attributes), int64(tc.h.attrs | int16(codec))},
					{"LastOffsetDelta", int64(kb.LastOffsetDelta), int64(wantLast)},
					{"FirstTimestamp", kb.FirstTimestamp, baseTS},
					{"MaxTimestamp", kb.MaxTimestamp, maxTS},
					{"ProducerID", kb.ProducerID, tc.h.producerID},
					{"ProducerEpoch", int64(kb.ProducerEpoch), int64(tc.h.producerEpoch)},
					{"FirstSequence", int64(kb.FirstSequence), int64(tc.h.baseSequence)},
					{"NumRecords", int64(kb.NumRecords), int64(len(tc.recs))},
				}
				for _, f := range fields {
					if f.got != f.want {
						t.Errorf("kmsg %s = %d, want %d", f.name, f.got, f.want)
					}
				}

				raw := kdecompress(t, codec, kb.Records)
				var got []tRecord
				for len(raw) > 0 {
					var kr kmsg.Record
					must(t, kr.ReadFrom(raw))
					_, n := binary.Varint(raw)
					raw = raw[n+int(kr.Length):]
					if kr.Attributes != 0 {
						t.Errorf("record attributes %d", kr.Attributes)
					}
					r := tRecord{Offset: int64(kr.OffsetDelta), Timestamp: kb.FirstTimestamp + kr.TimestampDelta64,
						Key: kr.Key, Value: kr.Value}
					for _, h := range kr.Headers {
						r.Headers = append(r.Headers, Header{Key: h.Key, Value: h.Value})
					}
					got = append(got, r)
				}
				want := append([]tRecord(nil), tc.recs...)
				for i := range want {
					want[i].Offset -= tc.h.baseOffset
				}
				recordsEqual(t, got, want)
			})
		}
	}
}

// Uncompressed (and raw snappy, which is deterministic), our bytes are
// kmsg's bytes exactly: the strongest statement of compatibility.
func TestBuilderBytesMatchKmsg(t *testing.T) {
	bld := NewBuilder(BatchOptions{})
	for _, tc := range kmsgCases() {
		for _, kc := range []kcodec{kcodecs[0], kcodecs[3]} {
			t.Run(tc.name+"/"+kc.name, func(t *testing.T) {
				baseTS := tc.recs[0].Timestamp
				if tc.h.baseTimestamp != nil {
					baseTS = *tc.h.baseTimestamp
				}
				theirs := kmsgBatch(tc.h, kc.codec, tc.recs, kc.comp(t, kmsgRecords(tc.recs, tc.h.baseOffset, baseTS)))
				ours := buildOurs(t, bld, tc.h, kc.codec, tc.recs)
				if !bytes.Equal(ours, theirs) {
					i := 0
					for i < min(len(ours), len(theirs)) && ours[i] == theirs[i] {
						i++
					}
					t.Fatalf("batches differ at byte %d (ours %d bytes, kmsg %d)", i, len(ours), len(theirs))
				}
			})
		}
	}
}
