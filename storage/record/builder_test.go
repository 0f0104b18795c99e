package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

// tRecord is a record as a test owns it: copied out of the iterator.
type tRecord struct {
	Offset     int64
	Timestamp  int64
	Attributes int8
	Key, Value []byte
	Headers    []Header
}

// readAll iterates b and copies every record out, keeping nil vs empty.
func readAll(t testing.TB, it *Iterator, b Batch) ([]tRecord, error) {
	t.Helper()
	if err := it.Reset(b); err != nil {
		return nil, err
	}
	var out []tRecord
	for it.Next() {
		r := it.Record()
		tr := tRecord{Offset: r.Offset, Timestamp: r.Timestamp, Attributes: r.Attributes,
			Key: clone(r.Key), Value: clone(r.Value)}
		h := r.HeaderIter()
		for h.Next() {
			tr.Headers = append(tr.Headers, Header{Key: string(h.Key), Value: clone(h.Value)})
		}
		if len(tr.Headers) != r.HeaderCount {
			t.Errorf("HeaderIter gave %d headers, HeaderCount %d", len(tr.Headers), r.HeaderCount)
		}
		out = append(out, tr)
	}
	return out, it.Err()
}

// clone copies b keeping nil as nil and empty as empty.
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func recordsEqual(t *testing.T, got, want []tRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Offset != w.Offset || g.Timestamp != w.Timestamp || g.Attributes != w.Attributes ||
			!sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, fmtRecord(g), fmtRecord(w))
		}
		for j := range w.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !sameBytes(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: got %q=%s, want %q=%s", i, j,
					g.Headers[j].Key, fmtBytes(g.Headers[j].Value), w.Headers[j].Key, fmtBytes(w.Headers[j].Value))
			}
		}
	}
}

// sameBytes is bytes.Equal that also tells nil from empty.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func fmtBytes(b []byte) string {
	if b == nil {
		return "null"
	}
	if len(b) > 16 {
		return fmt.Sprintf("%q...(%d)", b[:16], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func fmtRecord(r tRecord) string {
	return fmt.Sprintf("off=%d ts=%d attr=%d key=%s value=%s headers=%d", r.Offset, r.Timestamp, r.Attributes,
		fmtBytes(r.Key), fmtBytes(r.Value), len(r.Headers))
}

// The shapes a record can take, each in its own table row; every row runs
// under every codec.
var recordShapes = []struct {
	name string
	recs []tRecord
}{
	{"single", []tRecord{{Timestamp: 1, Key: []byte("k"), Value: []byte("v")}}},
	{"null key", []tRecord{{Timestamp: 5, Key: nil, Value: []byte("v")}}},
	{"empty key", []tRecord{{Timestamp: 5, Key: []byte{}, Value: []byte("v")}}},
	{"tombstone", []tRecord{{Timestamp: 5, Key: []byte("k"), Value: nil}}},
	{"empty value", []tRecord{{Timestamp: 5, Key: []byte("k"), Value: []byte{}}}},
	{"all null", []tRecord{{Timestamp: 0, Key: nil, Value: nil}}},
	{"headers", []tRecord{{Timestamp: 9, Key: []byte("k"), Value: []byte("v"), Headers: []Header{
		{Key: "a", Value: []byte("1")}, {Key: "", Value: []byte("empty key")},
		{Key: "null", Value: nil}, {Key: "empty", Value: []byte{}}, {Key: "a", Value: []byte("dup")},
	}}}},
	{"timestamps", []tRecord{
		{Timestamp: 1_700_000_000_000, Value: []byte("a")},
		{Timestamp: 1_699_999_000_000, Value: []byte("earlier")},
		{Timestamp: 1_700_000_500_000, Value: []byte("later")},
		{Timestamp: -1, Value: []byte("none")},
		{Timestamp: math.MaxInt64 / 4, Value: []byte("far")},
	}},
	{"big", []tRecord{
		{Timestamp: 1, Key: bytes.Repeat([]byte("K"), 300), Value: bytes.Repeat([]byte("abcdefgh"), 40_000)},
		{Timestamp: 2, Key: []byte("small"), Value: randBytes(70_000, 1)},
	}},
	{"many", manyRecords(1000)},
}

func manyRecords(n int) []tRecord {
	recs := make([]tRecord, n)
	for i := range recs {
		recs[i] = tRecord{Timestamp: int64(1000 + i/3), Key: fmt.Appendf(nil, "key-%d", i%17),
			Value: fmt.Appendf(nil, "value-%d-%s", i, bytes.Repeat([]byte{'x'}, i%50))}
		if i%7 == 0 {
			recs[i].Value = nil
		}
		if i%11 == 0 {
			recs[i].Headers = []Header{{Key: "trace", Value: fmt.Appendf(nil, "%d", i)}}
		}
	}
	return recs
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	var it Iterator // reused across every batch and codec on purpose
	bld := NewBuilder(BatchOptions{})
	for _, shape := range recordShapes {
		for _, c := range allCodecs {
			t.Run(shape.name+"/"+c.String(), func(t *testing.T) {
				bld.Reset(BatchOptions{Codec: c, PartitionLeaderEpoch: 3})
				want := make([]tRecord, len(shape.recs))
				for i, r := range shape.recs {
					if err := bld.Append(r.Timestamp, r.Key, r.Value, r.Headers); err != nil {
						t.Fatal(err)
					}
					want[i] = r
					want[i].Offset = 100 + int64(i)
				}
				if bld.Count() != len(shape.recs) {
					t.Errorf("Count = %d", bld.Count())
				}
				b, err := bld.Build()
				if err != nil {
					t.Fatal(err)
				}
				if c == CodecNone && bld.EstimatedSize() != len(b) {
					t.Errorf("EstimatedSize %d, batch %d bytes", bld.EstimatedSize(), len(b))
				}
				b.SetBaseOffset(100)
				if err := b.Validate(); err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, &it, b)
				if err != nil {
					t.Fatal(err)
				}
				recordsEqual(t, got, want)
				if b.BaseTimestamp() != shape.recs[0].Timestamp {
					t.Errorf("base timestamp %d, want the first record's %d", b.BaseTimestamp(), shape.recs[0].Timestamp)
				}
				var maxTS int64 = math.MinInt64
				for _, r := range shape.recs {
					maxTS = max(maxTS, r.Timestamp)
				}
				if b.MaxTimestamp() != maxTS {
					t.Errorf("max timestamp %d, want %d", b.MaxTimestamp(), maxTS)
				}
			})
		}
	}
}

// A batch's header fields reach each record through the Iterator.
func TestIteratorBatchFields(t *testing.T) {
	bld := NewBuilder(BatchOptions{LogAppendTime: true})
	bld.Append(10, nil, []byte("a"), nil)
	bld.Append(30, nil, []byte("b"), nil)
	b, _ := bld.Build()
	// The leader stamps LogAppendTime by rewriting maxTimestamp.
	binary.BigEndian.PutUint64(b[MaxTimestampOffset:], 99)
	b.UpdateCRC()
	var it Iterator
	recs, err := readAll(t, &it, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Timestamp != 99 {
			t.Errorf("LogAppendTime record timestamp %d, want the batch's 99", r.Timestamp)
		}
	}
	if it.Batch() == nil || it.Batch().RecordCount() != 2 {
		t.Errorf("Batch() after iteration = %v", it.Batch())
	}
}

// Compaction: records keep their original offsets, the batch keeps its span.
func TestCompactionBuild(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			opts := BatchOptions{Codec: c, Idempotent: true, ProducerID: 5, ProducerEpoch: 2, BaseSequence: 100}
			bld := NewBuilder(opts)
			if err := bld.SetDeleteHorizon(5000); err != nil {
				t.Fatal(err)
			}
			for _, d := range []int32{1, 4, 5} {
				if err := bld.AppendAt(d, 4000+int64(d), []byte{byte(d)}, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := bld.SetLastOffsetDelta(9); err != nil {
				t.Fatal(err)
			}
			b, err := bld.Build()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Validate(); err != nil {
				t.Fatal(err)
			}
			if b.LastOffsetDelta() != 9 || b.RecordCount() != 3 || b.BaseTimestamp() != 5000 ||
				b.MaxTimestamp() != 4005 || b.Attributes()&AttrDeleteHorizon == 0 {
				t.Errorf("header: last delta %d count %d base ts %d max ts %d attrs %#x",
					b.LastOffsetDelta(), b.RecordCount(), b.BaseTimestamp(), b.MaxTimestamp(), b.Attributes())
			}
			b.SetBaseOffset(1000)
			var it Iterator
			recs, err := readAll(t, &it, b)
			if err != nil {
				t.Fatal(err)
			}
			recordsEqual(t, recs, []tRecord{
				{Offset: 1001, Timestamp: 4001, Key: []byte{1}},
				{Offset: 1004, Timestamp: 4004, Key: []byte{4}},
				{Offset: 1005, Timestamp: 4005, Key: []byte{5}},
			})
			// Rebuilding from OptionsOf keeps the header byte for byte.
			if got := OptionsOf(b); got != opts {
				t.Errorf("OptionsOf = %+v, want %+v", got, opts)
			}
		})
	}
}

func TestEmptyBatch(t *testing.T) {
	bld := NewBuilder(BatchOptions{})
	if _, err := bld.Build(); !errors.Is(err, ErrInvalidAppend) {
		t.Fatalf("empty Build = %v, want ErrInvalidAppend", err)
	}
	for _, c := range allCodecs {
		bld.Reset(BatchOptions{Codec: c, Idempotent: true, ProducerID: 8, ProducerEpoch: 1, BaseSequence: 4})
		if err := bld.SetLastOffsetDelta(3); err != nil {
			t.Fatal(err)
		}
		b, err := bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Validate(); err != nil {
			t.Fatal(err)
		}
		if b.RecordCount() != 0 || b.LastOffsetDelta() != 3 || b.BaseTimestamp() != NoTimestamp || b.MaxTimestamp() != NoTimestamp {
			t.Errorf("%v: empty batch header: count %d last %d ts %d/%d", c, b.RecordCount(), b.LastOffsetDelta(), b.BaseTimestamp(), b.MaxTimestamp())
		}
		var it Iterator
		recs, err := readAll(t, &it, b)
		if err != nil || len(recs) != 0 {
			t.Errorf("%v: iterating an empty batch: %d records, %v", c, len(recs), err)
		}
	}
}

func TestBuilderMisuse(t *testing.T) {
	bld := NewBuilder(BatchOptions{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	bad := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidAppend) {
			t.Errorf("%s: %v, want ErrInvalidAppend", what, err)
		}
	}
	must(bld.AppendAt(3, 1, nil, nil, nil))
	bad("same delta", bld.AppendAt(3, 1, nil, nil, nil))
	bad("lower delta", bld.AppendAt(2, 1, nil, nil, nil))
	bad("base timestamp after a record", bld.SetBaseTimestamp(5))
	bad("delete horizon after a record", bld.SetDeleteHorizon(5))
	bad("span below last record", bld.SetLastOffsetDelta(2))
	must(bld.SetLastOffsetDelta(4))
	must(bld.Append(1, nil, nil, nil)) // delta 4
	bad("append past span", bld.Append(1, nil, nil, nil))
	bld.Reset(BatchOptions{})
	bad("negative delta", bld.AppendAt(-1, 1, nil, nil, nil))
	bad("negative span", bld.SetLastOffsetDelta(-1))
	must(bld.AppendAt(math.MaxInt32, 1, nil, nil, nil))
	bad("delta overflow", bld.Append(1, nil, nil, nil))
	b, err := bld.Build()
	must(err)
	if b.LastOffsetDelta() != math.MaxInt32 {
		t.Errorf("last offset delta %d", b.LastOffsetDelta())
	}
}

// Build may be called again after more appends, and Reset reuses buffers.
func TestBuilderRebuildAndReuse(t *testing.T) {
	bld := NewBuilder(BatchOptions{Codec: CodecZstd})
	bld.Append(1, []byte("a"), []byte("1"), nil)
	b1, err := bld.Build()
	if err != nil || b1.RecordCount() != 1 {
		t.Fatal(b1.RecordCount(), err)
	}
	bld.Append(2, []byte("b"), []byte("2"), nil)
	b2, err := bld.Build()
	if err != nil || b2.RecordCount() != 2 || b2.Validate() != nil {
		t.Fatal(b2.RecordCount(), err)
	}
	var it Iterator
	recs, err := readAll(t, &it, b2)
	if err != nil || len(recs) != 2 || string(recs[1].Key) != "b" {
		t.Fatalf("%v %v", recs, err)
	}
	bld.Reset(BatchOptions{})
	bld.SetBaseTimestamp(100)
	bld.Append(90, nil, []byte("x"), nil)
	b3, _ := bld.Build()
	if b3.BaseTimestamp() != 100 || b3.Codec() != CodecNone {
		t.Errorf("after Reset: base ts %d codec %v", b3.BaseTimestamp(), b3.Codec())
	}
	recs, err = readAll(t, &it, b3)
	if err != nil || recs[0].Timestamp != 90 {
		t.Fatalf("negative timestamp delta: %v %v", recs, err)
	}
}

// The Iterator's checks on the records section, on hand-made records.
func TestIteratorCorruptRecords(t *testing.T) {
	// rec encodes one record from raw fields, with a correct length unless
	// length is given.
	type raw struct {
		length  *int64
		attrs   byte
		tsDelta int64
		delta   int64
		keyLen  int64
		key     string
		valLen  int64
		val     string
		hdrs    []int64 // varints appended as the headers section, count first
		extra   []byte  // bytes appended inside the record
	}
	enc := func(r raw) []byte {
		var body []byte
		body = append(body, r.attrs)
		body = binary.AppendVarint(body, r.tsDelta)
		body = binary.AppendVarint(body, r.delta)
		body = binary.AppendVarint(body, r.keyLen)
		body = append(body, r.key...)
		body = binary.AppendVarint(body, r.valLen)
		body = append(body, r.val...)
		if r.hdrs == nil {
			body = binary.AppendVarint(body, 0)
		}
		for _, v := range r.hdrs {
			body = binary.AppendVarint(body, v)
		}
		body = append(body, r.extra...)
		n := int64(len(body))
		if r.length != nil {
			n = *r.length
		}
		return append(binary.AppendVarint(nil, n), body...)
	}
	i64 := func(v int64) *int64 { return &v }
	good := func(delta int64) raw { return raw{delta: delta, keyLen: 1, key: "k", valLen: 1, val: "v"} }
	// batch wraps records in a header claiming count records and last delta.
	batch := func(count, last int32, records ...[]byte) Batch {
		b := make([]byte, HeaderSize)
		for _, r := range records {
			b = append(b, r...)
		}
		binary.BigEndian.PutUint32(b[LengthOffset:], uint32(len(b)-LogOverhead))
		b[MagicOffset] = Magic
		binary.BigEndian.PutUint32(b[LastOffsetDeltaOffset:], uint32(last))
		binary.BigEndian.PutUint32(b[RecordCountOffset:], uint32(count))
		Batch(b).UpdateCRC()
		return b
	}
	withRec := func(mut func(*raw)) []byte {
		r := good(0)
		mut(&r)
		return enc(r)
	}

	var it Iterator
	if recs, err := readAll(t, &it, batch(2, 1, enc(good(0)), enc(good(1)))); err != nil || len(recs) != 2 {
		t.Fatalf("control case: %v %v", recs, err)
	}
	cases := []struct {
		name string
		b    Batch
	}{
		{"fewer records than count", batch(3, 2, enc(good(0)), enc(good(1)))},
		{"more records than count", batch(1, 1, enc(good(0)), enc(good(1)))},
		{"trailing garbage", batch(1, 0, enc(good(0)), []byte{0, 0})},
		{"repeated delta", batch(2, 1, enc(good(0)), enc(good(0)))},
		{"decreasing delta", batch(2, 5, enc(good(3)), enc(good(1)))},
		{"delta past last", batch(1, 0, enc(good(1)))},
		{"negative delta", batch(1, 0, enc(good(-1)))},
		{"length too long", batch(1, 0, enc(raw{length: i64(100), keyLen: -1, valLen: -1}))},
		{"length too short", batch(1, 0, enc(raw{length: i64(3), keyLen: -1, valLen: -1}))},
		{"length zero", batch(1, 0, enc(raw{length: i64(0)}))},
		{"length negative", batch(1, 0, enc(raw{length: i64(-5), keyLen: -1, valLen: -1}))},
		{"bytes after fields", batch(1, 0, withRec(func(r *raw) { r.extra = []byte{1} }))},
		{"key length -2", batch(1, 0, withRec(func(r *raw) { r.keyLen, r.key = -2, "" }))},
		{"key overruns record", batch(1, 0, withRec(func(r *raw) { r.keyLen = 50 }))},
		{"value length -2", batch(1, 0, withRec(func(r *raw) { r.valLen, r.val = -2, "" }))},
		{"value overruns record", batch(1, 0, withRec(func(r *raw) { r.valLen = 2 }))},
		{"negative header count", batch(1, 0, withRec(func(r *raw) { r.hdrs = []int64{-1} }))},
		{"header count too high", batch(1, 0, withRec(func(r *raw) { r.hdrs = []int64{2, 0, -1} }))},
		{"null header key", batch(1, 0, withRec(func(r *raw) { r.hdrs = []int64{1, -1, -1} }))},
		{"header value -2", batch(1, 0, withRec(func(r *raw) { r.hdrs = []int64{1, 0, -2} }))},
		{"varint over int32", batch(1, 0, withRec(func(r *raw) { r.delta = 1 << 33 }))},
		{"count too high for bytes", batch(1000, 1000, enc(good(0)))},
		{"truncated varint", batch(1, 0, []byte{0x80})},
		{"six-byte varint", batch(1, 0, append([]byte{0x8e, 0x80, 0x80, 0x80, 0x80, 0x00}, enc(good(0))[1:]...))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.b.Validate(); err != nil {
				t.Fatalf("the header should validate: %v", err)
			}
			_, err := readAll(t, &it, tc.b)
			if !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("got %v, want ErrCorruptRecord", err)
			}
			if it.Next() {
				t.Fatal("Next after an error")
			}
		})
	}
}

// A compressed batch whose records section does not decompress, or
// decompresses to garbage, is ErrCorruptRecord.
func TestIteratorCorruptCompressed(t *testing.T) {
	for _, c := range allCodecs[1:] {
		t.Run(c.String(), func(t *testing.T) {
			orig := testBatch(t, c)
			var it Iterator
			for _, cut := range []int{1, 5, len(orig.Records()) / 2} {
				recs := orig.Records()
				b := append(append(Batch(nil), orig[:HeaderSize]...), recs[:len(recs)-cut]...)
				binary.BigEndian.PutUint32(b[LengthOffset:], uint32(len(b)-LogOverhead))
				b.UpdateCRC()
				if _, err := readAll(t, &it, b); !errors.Is(err, ErrCorruptRecord) {
					t.Errorf("records cut by %d: %v, want ErrCorruptRecord", cut, err)
				}
			}
			// Compressed garbage that is not a record section.
			junk, err := AppendCompressed(nil, c, []byte("this is not a record section at all, definitely"))
			if err != nil {
				t.Fatal(err)
			}
			b := append(append(Batch(nil), orig[:HeaderSize]...), junk...)
			binary.BigEndian.PutUint32(b[LengthOffset:], uint32(len(b)-LogOverhead))
			binary.BigEndian.PutUint32(b[RecordCountOffset:], 2)
			b.UpdateCRC()
			if _, err := readAll(t, &it, b); !errors.Is(err, ErrCorruptRecord) {
				t.Errorf("garbage records: %v, want ErrCorruptRecord", err)
			}
		})
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	inputs := [][]byte{
		{},
		[]byte("a"),
		bytes.Repeat([]byte("hello strata "), 1000),
		randBytes(200_000, 7), // incompressible, several lz4/xerial blocks
	}
	for _, c := range allCodecs {
		for i, in := range inputs {
			prefix := []byte("keep")
			comp, err := AppendCompressed(append([]byte(nil), prefix...), c, in)
			if err != nil {
				t.Fatalf("%v input %d: %v", c, i, err)
			}
			if !bytes.HasPrefix(comp, prefix) {
				t.Fatalf("%v: AppendCompressed did not append", c)
			}
			out, err := AppendDecompressed([]byte("pre"), c, comp[len(prefix):], 0)
			if err != nil {
				t.Fatalf("%v input %d: %v", c, i, err)
			}
			if !bytes.Equal(out, append([]byte("pre"), in...)) {
				t.Fatalf("%v input %d: round trip differs (%d bytes, want %d)", c, i, len(out), len(in)+3)
			}
		}
	}
}

// The Java client's xerial framing decodes, chunk by chunk, and so does a
// raw snappy block; both respect the limit.
func TestSnappyXerial(t *testing.T) {
	in := randBytes(100_000, 3)
	in = append(in, bytes.Repeat([]byte("abc"), 30_000)...)
	framed := xerialFrame(in, 32<<10)
	out, err := AppendDecompressed(nil, CodecSnappy, framed, 0)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("xerial: %d bytes, %v", len(out), err)
	}
	// Header only: an empty stream.
	if out, err := AppendDecompressed(nil, CodecSnappy, framed[:xerialHeaderLen], 0); err != nil || len(out) != 0 {
		t.Fatalf("xerial header only: %d bytes, %v", len(out), err)
	}
	if _, err := AppendDecompressed(nil, CodecSnappy, framed, len(in)-1); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("xerial over limit: %v", err)
	}
	for _, cut := range []int{1, 3, 100, len(framed) - xerialHeaderLen - 2} {
		if _, err := AppendDecompressed(nil, CodecSnappy, framed[:len(framed)-cut], 0); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("xerial cut by %d: %v", cut, err)
		}
	}
	// A chunk length claiming more than is there.
	bad := append([]byte(nil), framed...)
	binary.BigEndian.PutUint32(bad[xerialHeaderLen:], 0x7fffffff)
	if _, err := AppendDecompressed(nil, CodecSnappy, bad, 0); !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("xerial chunk overrun: %v", err)
	}
}

// xerialFrame frames in the way the Java client's SnappyOutputStream does.
func xerialFrame(in []byte, chunk int) []byte {
	out := append([]byte(nil), xerialMagic...)
	out = binary.BigEndian.AppendUint32(out, 1)
	out = binary.BigEndian.AppendUint32(out, 1)
	for len(in) > 0 {
		n := min(chunk, len(in))
		block, _ := AppendCompressed(nil, CodecSnappy, in[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		in = in[n:]
	}
	return out
}

// A decompression bomb stops at the limit with ErrCorruptRecord, without
// allocating for what it claims.
func TestDecompressionLimit(t *testing.T) {
	const limit = 1 << 20
	bomb := make([]byte, 8<<20) // zeros compress ~1000x
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			comp, err := AppendCompressed(nil, c, bomb)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := AppendDecompressed(nil, c, comp, limit); !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("8 MiB into a 1 MiB limit: %v, want ErrCorruptRecord", err)
			}
			// Exactly at the limit is fine.
			comp, _ = AppendCompressed(nil, c, bomb[:limit])
			if out, err := AppendDecompressed(nil, c, comp, limit); err != nil || len(out) != limit {
				t.Fatalf("exactly the limit: %d, %v", len(out), err)
			}
			if c == CodecNone {
				return // nothing to decompress: the Iterator reads the batch in place
			}
			// The Iterator applies its own limit.
			bld := NewBuilder(BatchOptions{Codec: c})
			bld.Append(0, nil, bomb[:2*limit], nil)
			b, err := bld.Build()
			if err != nil {
				t.Fatal(err)
			}
			var it Iterator
			it.SetMaxDecompressedSize(limit)
			if err := it.Reset(b); !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("Iterator over its limit: %v", err)
			}
			it.SetMaxDecompressedSize(0)
			if err := it.Reset(b); err != nil {
				t.Fatalf("Iterator under the default limit: %v", err)
			}
		})
	}
	// Several frames, each under the limit, together over it.
	frame, _ := AppendCompressed(nil, CodecZstd, bomb[:600<<10])
	frames := append(append(append([]byte(nil), frame...), frame...), frame...)
	if out, err := AppendDecompressed(nil, CodecZstd, frames[:len(frame)], limit); err != nil || len(out) != 600<<10 {
		t.Fatalf("one zstd frame: %d, %v", len(out), err)
	}
	if _, err := AppendDecompressed(nil, CodecZstd, frames, limit); !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("three zstd frames over the limit: %v", err)
	}
	member, _ := AppendCompressed(nil, CodecGzip, bomb[:600<<10])
	if _, err := AppendDecompressed(nil, CodecGzip, append(append([]byte(nil), member...), member...), limit); !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("two gzip members over the limit: %v", err)
	}
	// A raw snappy block claiming 4 GiB is refused from its header alone.
	claim := binary.AppendUvarint(nil, 1<<32-1)
	if _, err := AppendDecompressed(nil, CodecSnappy, append(claim, 0, 0), 0); !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("snappy 4 GiB claim: %v", err)
	}
}

// Heap in use after decompressing a bomb stays near the limit, not the claim.
func TestDecompressionBombMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	bomb := make([]byte, 64<<20)
	for _, c := range allCodecs[1:] {
		comp, err := AppendCompressed(nil, c, bomb)
		if err != nil {
			t.Fatal(err)
		}
		AppendDecompressed(nil, c, comp, 1<<20) // warm the pools
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = AppendDecompressed(nil, c, comp, 1<<20)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%v: %v, want ErrCorruptRecord", c, err)
		}
		n := after.TotalAlloc - before.TotalAlloc
		t.Logf("%v: %d bytes allocated to refuse the bomb", c, n)
		if n > 8<<20 {
			t.Errorf("%v: %d bytes allocated to refuse a 64 MiB bomb at a 1 MiB limit", c, n)
		}
	}
}

// Append and iteration allocate nothing per record once warm, and Build
// allocates nothing for CodecNone.
func TestZeroAllocs(t *testing.T) {
	key, val := []byte("key"), bytes.Repeat([]byte("v"), 100)
	hdrs := []Header{{Key: "h", Value: []byte("x")}}
	for _, c := range allCodecs {
		bld := NewBuilder(BatchOptions{Codec: c})
		var it Iterator
		fill := func() Batch {
			bld.Reset(BatchOptions{Codec: c})
			for i := range 100 {
				bld.Append(int64(i), key, val, hdrs)
			}
			b, _ := bld.Build()
			return b
		}
		b := fill()
		iterate := func() {
			it.Reset(b)
			for it.Next() {
				r := it.Record()
				h := r.HeaderIter()
				for h.Next() {
				}
				for k, v := range r.Headers() {
					_, _ = k, v
				}
			}
		}
		iterate()
		if c != CodecNone && poolIsLossy() {
			continue // the race detector makes sync.Pool drop items on purpose
		}
		if n := testing.AllocsPerRun(20, func() { fill() }); c == CodecNone && n != 0 || n > 2 {
			t.Errorf("%v: %.1f allocations to build a warm 100-record batch", c, n)
		}
		if n := testing.AllocsPerRun(20, iterate); c == CodecNone && n != 0 || n > 2 {
			t.Errorf("%v: %.1f allocations to iterate a 100-record batch", c, n)
		}
	}
}

// poolIsLossy reports whether sync.Pool drops items it was given, as it does
// on purpose under the race detector (and rarely across a GC).
func poolIsLossy() bool {
	var p sync.Pool
	for range 100 {
		x := new(int)
		p.Put(x)
		if p.Get() != x {
			return true
		}
	}
	return false
}

// A record's Key and Value are capped at their length: appending to one
// cannot overwrite the next field.
func TestRecordSlicesClipped(t *testing.T) {
	bld := NewBuilder(BatchOptions{})
	bld.Append(1, []byte("key"), []byte("value"), []Header{{Key: "h", Value: []byte("hv")}})
	b, _ := bld.Build()
	var it Iterator
	if err := it.Reset(b); err != nil || !it.Next() {
		t.Fatal(err)
	}
	r := it.Record()
	if cap(r.Key) != len(r.Key) || cap(r.Value) != len(r.Value) {
		t.Fatalf("key cap %d len %d, value cap %d len %d", cap(r.Key), len(r.Key), cap(r.Value), len(r.Value))
	}
	_ = append(r.Key, 'X')
	if string(r.Value) != "value" || b.Validate() != nil {
		t.Fatal("appending to the key changed the batch")
	}
}

// Headers() yields what HeaderIter does and stops when asked.
func TestHeadersSeq(t *testing.T) {
	hdrs := []Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}, {Key: "c", Value: []byte{}}}
	bld := NewBuilder(BatchOptions{})
	bld.Append(1, nil, nil, hdrs)
	b, _ := bld.Build()
	var it Iterator
	if err := it.Reset(b); err != nil || !it.Next() {
		t.Fatal(err)
	}
	var got []Header
	for k, v := range it.Record().Headers() {
		got = append(got, Header{Key: string(k), Value: clone(v)})
	}
	if len(got) != 3 || got[0].Key != "a" || got[1].Value != nil || got[2].Value == nil {
		t.Fatalf("headers %+v", got)
	}
	n := 0
	for range it.Record().Headers() {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after %d", n)
	}
}

// Record's exported fields are what the iterator promises; catch accidental
// additions that would change the zero-alloc contract.
func TestRecordShape(t *testing.T) {
	typ := reflect.TypeFor[Record]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Map {
			t.Errorf("Record.%s is a %v: records must not own heap objects", f.Name, f.Type.Kind())
		}
	}
}
