package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fuzzLimit keeps the fuzzer's decompression small and fast.
const fuzzLimit = 1 << 20

// seedBatches are valid batches of every codec and a few shapes.
func seedBatches(t testing.TB) [][]byte {
	var seeds [][]byte
	bld := NewBuilder(BatchOptions{})
	for _, c := range allCodecs {
		seeds = append(seeds, testBatch(t, c))

		bld.Reset(BatchOptions{Codec: c, Idempotent: true, ProducerID: 3, ProducerEpoch: 1, BaseSequence: 7, Transactional: true})
		bld.Append(10, nil, nil, nil)
		bld.Append(9, []byte{}, []byte{}, []Header{{Key: "", Value: nil}, {Key: "k", Value: []byte{}}})
		bld.AppendAt(5, 11, []byte("k"), []byte("v"), nil)
		bld.SetLastOffsetDelta(8)
		b, err := bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, bytes.Clone(b))

		bld.Reset(BatchOptions{Codec: c})
		bld.SetLastOffsetDelta(2)
		b, err = bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, bytes.Clone(b))
	}
	// The xerial framing, which our Builder never writes.
	seeds = append(seeds, withSection(testBatch(t, CodecNone), CodecSnappy, xerialFrame(testBatch(t, CodecNone).Records(), 100)))
	return seeds
}

// withSection replaces b's records section (and codec), fixing length and CRC.
func withSection(b Batch, c Codec, section []byte) Batch {
	out := append(append(Batch(nil), b[:HeaderSize]...), section...)
	binary.BigEndian.PutUint32(out[LengthOffset:], uint32(len(out)-LogOverhead))
	binary.BigEndian.PutUint16(out[AttributesOffset:], uint16(out.Attributes()&^AttrCompressionMask|int16(c)))
	out.UpdateCRC()
	return out
}

// FuzzBatchDecode feeds arbitrary bytes to Parse, Validate and the Iterator.
// Invariants: nothing panics; every error is one of the package's
// sentinels; a batch the Iterator accepts (the CRC is not its business)
// iterates identically twice, and its records respect the header's count
// and offset span.
func FuzzBatchDecode(f *testing.F) {
	for _, s := range seedBatches(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		known := func(err error) bool {
			return errors.Is(err, ErrCorruptRecord) || errors.Is(err, ErrShortBatch) || errors.Is(err, ErrUnknownCodec)
		}
		b, err := Parse(data)
		if err != nil {
			if !known(err) {
				t.Fatalf("Parse: unexpected error %v", err)
			}
			return
		}
		verr := b.Validate()
		if verr != nil && !known(verr) {
			t.Fatalf("Validate: unexpected error %v", verr)
		}

		var it Iterator
		it.SetMaxDecompressedSize(fuzzLimit)
		first, err := readAll(t, &it, b)
		if err != nil && !known(err) {
			t.Fatalf("iterate: unexpected error %v", err)
		}
		if verr == nil && err != nil && !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("a batch that validates failed to iterate with %v", err)
		}
		if err != nil {
			return
		}
		// Whatever the CRC says, a batch the Iterator accepts reads back
		// identically the second time.
		second, err := readAll(t, &it, b)
		if err != nil {
			t.Fatalf("second pass: %v", err)
		}
		if len(first) != int(b.RecordCount()) {
			t.Fatalf("%d records, header says %d", len(first), b.RecordCount())
		}
		for i := range first {
			f, s := first[i], second[i]
			if f.Offset != s.Offset || f.Timestamp != s.Timestamp || !sameBytes(f.Key, s.Key) || !sameBytes(f.Value, s.Value) || len(f.Headers) != len(s.Headers) {
				t.Fatalf("record %d differs between passes", i)
			}
			if f.Offset < b.BaseOffset() || f.Offset > b.LastOffset() || i > 0 && f.Offset <= first[i-1].Offset {
				t.Fatalf("record %d offset %d outside [%d, %d] or not increasing", i, f.Offset, b.BaseOffset(), b.LastOffset())
			}
		}
	})
}

// FuzzRoundTrip builds a batch from fuzzed records and reads it back.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), int64(0), int64(5), []byte("k"), []byte("v"), "h", []byte("hv"), uint8(0))
	f.Add(uint8(1), int64(-1), int64(1<<40), []byte{}, []byte(nil), "", []byte{}, uint8(7))
	f.Add(uint8(4), int64(1<<62), int64(-1<<62), []byte(nil), bytes.Repeat([]byte("z"), 1000), "trace", []byte(nil), uint8(3))
	f.Fuzz(func(t *testing.T, codec uint8, ts0, ts1 int64, key, value []byte, hkey string, hval []byte, nulls uint8) {
		c := Codec(codec % 5)
		// The fuzzer cannot produce nil; let bits of nulls choose it.
		if nulls&1 != 0 {
			key = nil
		}
		if nulls&2 != 0 {
			value = nil
		}
		if nulls&4 != 0 {
			hval = nil
		}
		hdrs := []Header{{Key: hkey, Value: hval}}
		bld := NewBuilder(BatchOptions{Codec: c})
		if err := bld.Append(ts0, key, value, hdrs); err != nil {
			t.Fatal(err)
		}
		if err := bld.AppendAt(int32(len(key)%100)+1, ts1, value, key, nil); err != nil {
			t.Fatal(err)
		}
		b, err := bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Validate(); err != nil {
			t.Fatal(err)
		}
		var it Iterator
		got, err := readAll(t, &it, b)
		if err != nil {
			t.Fatal(err)
		}
		want := []tRecord{
			{Offset: 0, Timestamp: ts0, Key: key, Value: value, Headers: hdrs},
			{Offset: int64(len(key)%100) + 1, Timestamp: ts1, Key: value, Value: key},
		}
		recordsEqual(t, got, want)
	})
}
