package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// The batch layout, attribute bits and codec numbers are part of the format:
// append-only. These pins fail if anyone renumbers them.
func TestFormatConstantsPinned(t *testing.T) {
	pins := []struct {
		name      string
		got, want int64
	}{
		{"BaseOffsetOffset", BaseOffsetOffset, 0},
		{"LengthOffset", LengthOffset, 8},
		{"PartitionLeaderEpochOffset", PartitionLeaderEpochOffset, 12},
		{"MagicOffset", MagicOffset, 16},
		{"CRCOffset", CRCOffset, 17},
		{"AttributesOffset", AttributesOffset, 21},
		{"LastOffsetDeltaOffset", LastOffsetDeltaOffset, 23},
		{"BaseTimestampOffset", BaseTimestampOffset, 27},
		{"MaxTimestampOffset", MaxTimestampOffset, 35},
		{"ProducerIDOffset", ProducerIDOffset, 43},
		{"ProducerEpochOffset", ProducerEpochOffset, 51},
		{"BaseSequenceOffset", BaseSequenceOffset, 53},
		{"RecordCountOffset", RecordCountOffset, 57},
		{"HeaderSize", HeaderSize, 61},
		{"LogOverhead", LogOverhead, 12},
		{"Magic", Magic, 2},
		{"AttrCompressionMask", AttrCompressionMask, 0x07},
		{"AttrTimestampType", AttrTimestampType, 0x08},
		{"AttrTransactional", AttrTransactional, 0x10},
		{"AttrControl", AttrControl, 0x20},
		{"AttrDeleteHorizon", AttrDeleteHorizon, 0x40},
		{"CodecNone", int64(CodecNone), 0},
		{"CodecGzip", int64(CodecGzip), 1},
		{"CodecSnappy", int64(CodecSnappy), 2},
		{"CodecLZ4", int64(CodecLZ4), 3},
		{"CodecZstd", int64(CodecZstd), 4},
		{"NoProducerID", NoProducerID, -1},
		{"NoProducerEpoch", NoProducerEpoch, -1},
		{"NoSequence", NoSequence, -1},
		{"NoTimestamp", NoTimestamp, -1},
	}
	for _, p := range pins {
		if p.got != p.want {
			t.Errorf("%s = %d, the format says %d", p.name, p.got, p.want)
		}
	}
	if !bytes.Equal(xerialMagic, []byte("\x82SNAPPY\x00")) || xerialHeaderLen != 16 {
		t.Errorf("xerial framing constants changed")
	}
}

func TestCodecNames(t *testing.T) {
	for c := CodecNone; c <= CodecZstd; c++ {
		got, err := ParseCodec(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCodec(%q) = %v, %v", c.String(), got, err)
		}
		if !c.Valid() {
			t.Errorf("%v not valid", c)
		}
	}
	if _, err := ParseCodec("brotli"); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("ParseCodec(brotli) = %v, want ErrUnknownCodec", err)
	}
	for _, c := range []Codec{-1, 5, 7} {
		if c.Valid() {
			t.Errorf("%v valid", c)
		}
	}
}

// Every header field written by the Builder reads back through the accessors.
func TestHeaderRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		opts BatchOptions
	}{
		{"zero", BatchOptions{}},
		{"idempotent", BatchOptions{Idempotent: true, ProducerID: 1 << 40, ProducerEpoch: 7, BaseSequence: 1 << 30}},
		{"transactional", BatchOptions{Idempotent: true, ProducerID: 9, ProducerEpoch: 0, BaseSequence: 0, Transactional: true}},
		{"control", BatchOptions{Idempotent: true, ProducerID: 9, ProducerEpoch: 3, Transactional: true, Control: true}},
		{"logappend", BatchOptions{LogAppendTime: true, PartitionLeaderEpoch: -1}},
		{"epoch", BatchOptions{PartitionLeaderEpoch: 1<<31 - 1}},
		{"gzip", BatchOptions{Codec: CodecGzip}},
		{"snappy", BatchOptions{Codec: CodecSnappy}},
		{"lz4", BatchOptions{Codec: CodecLZ4}},
		{"zstd", BatchOptions{Codec: CodecZstd, Idempotent: true, ProducerID: 0, ProducerEpoch: 0, BaseSequence: 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bld := NewBuilder(tc.opts)
			for i := range 5 {
				if err := bld.Append(1000+int64(i*10)-int64(i%2*15), []byte("k"), []byte("v"), nil); err != nil {
					t.Fatal(err)
				}
			}
			b, err := bld.Build()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Validate(); err != nil {
				t.Fatal(err)
			}
			o := tc.opts
			pid, epoch, seq := int64(NoProducerID), int16(NoProducerEpoch), int32(NoSequence)
			if o.Idempotent {
				pid, epoch, seq = o.ProducerID, o.ProducerEpoch, o.BaseSequence
			}
			checks := []struct {
				name      string
				got, want int64
			}{
				{"BaseOffset", b.BaseOffset(), 0},
				{"Size", int64(b.Size()), int64(len(b))},
				{"PartitionLeaderEpoch", int64(b.PartitionLeaderEpoch()), int64(o.PartitionLeaderEpoch)},
				{"Magic", int64(b.Magic()), Magic},
				{"Codec", int64(b.Codec()), int64(o.Codec)},
				{"LastOffsetDelta", int64(b.LastOffsetDelta()), 4},
				{"BaseTimestamp", b.BaseTimestamp(), 1000},
				{"MaxTimestamp", b.MaxTimestamp(), 1040},
				{"ProducerID", b.ProducerID(), pid},
				{"ProducerEpoch", int64(b.ProducerEpoch()), int64(epoch)},
				{"BaseSequence", int64(b.BaseSequence()), int64(seq)},
				{"RecordCount", int64(b.RecordCount()), 5},
				{"NextOffset", b.NextOffset(), 5},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
				}
			}
			if b.IsTransactional() != o.Transactional || b.IsControl() != o.Control || b.LogAppendTime() != o.LogAppendTime {
				t.Errorf("flags: txn %v control %v logappend %v, want %+v", b.IsTransactional(), b.IsControl(), b.LogAppendTime(), o)
			}
			if got := OptionsOf(b); got != normalized(o) {
				t.Errorf("OptionsOf = %+v, want %+v", got, normalized(o))
			}

			// The leader assigns offsets and epoch in place: CRC unaffected.
			b.SetBaseOffset(1 << 50)
			b.SetPartitionLeaderEpoch(77)
			if err := b.Validate(); err != nil {
				t.Fatalf("after SetBaseOffset: %v", err)
			}
			if b.BaseOffset() != 1<<50 || b.LastOffset() != 1<<50+4 || b.PartitionLeaderEpoch() != 77 {
				t.Errorf("in-place fields: %d %d %d", b.BaseOffset(), b.LastOffset(), b.PartitionLeaderEpoch())
			}
		})
	}
}

// normalized is what OptionsOf recovers from a batch built with o.
func normalized(o BatchOptions) BatchOptions {
	if !o.Idempotent {
		o.ProducerID, o.ProducerEpoch, o.BaseSequence = NoProducerID, NoProducerEpoch, NoSequence
	}
	o.Idempotent = o.ProducerID != NoProducerID || o.ProducerEpoch != NoProducerEpoch || o.BaseSequence != NoSequence
	return o
}

// testBatch builds a small valid batch with codec c.
func testBatch(t testing.TB, c Codec) Batch {
	t.Helper()
	bld := NewBuilder(BatchOptions{Codec: c, Idempotent: true, ProducerID: 42, ProducerEpoch: 1, BaseSequence: 10})
	for i := range 20 {
		key := []byte{byte('a' + i)}
		val := bytes.Repeat([]byte{byte(i)}, 30+i)
		if err := bld.Append(int64(1_700_000_000_000+i), key, val, []Header{{Key: "h", Value: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := bld.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append(Batch(nil), b...)
}

// Flipping any single byte the CRC covers, or the magic or length, is
// ErrCorruptRecord. Flipping baseOffset or partitionLeaderEpoch is not
// detected: they sit outside the CRC by design.
func TestValidateDetectsEveryFlip(t *testing.T) {
	for c := CodecNone; c <= CodecZstd; c++ {
		t.Run(c.String(), func(t *testing.T) {
			orig := testBatch(t, c)
			if err := orig.Validate(); err != nil {
				t.Fatal(err)
			}
			for i := range orig {
				b := append(Batch(nil), orig...)
				b[i] ^= 0x5a
				err := b.Validate()
				switch {
				case i < LengthOffset || (i >= PartitionLeaderEpochOffset && i < MagicOffset):
					if err != nil {
						t.Errorf("flip at %d (outside the CRC): %v", i, err)
					}
				case i < PartitionLeaderEpochOffset:
					// The length now disagrees with the buffer: short or corrupt.
					if !errors.Is(err, ErrCorruptRecord) && !errors.Is(err, ErrShortBatch) {
						t.Errorf("flip in length at %d: %v", i, err)
					}
				default:
					if !errors.Is(err, ErrCorruptRecord) {
						t.Errorf("flip at %d: %v, want ErrCorruptRecord", i, err)
					}
				}
			}
		})
	}
}

func TestTruncatedIsShort(t *testing.T) {
	orig := testBatch(t, CodecNone)
	for n := 0; n < len(orig); n++ {
		b := orig[:n]
		if _, err := Parse(b); !errors.Is(err, ErrShortBatch) {
			t.Fatalf("Parse of %d/%d bytes: %v, want ErrShortBatch", n, len(orig), err)
		}
		if err := b.Validate(); !errors.Is(err, ErrShortBatch) {
			t.Fatalf("Validate of %d/%d bytes: %v, want ErrShortBatch", n, len(orig), err)
		}
		var it Iterator
		if err := it.Reset(b); !errors.Is(err, ErrShortBatch) {
			t.Fatalf("Iterator.Reset of %d/%d bytes: %v, want ErrShortBatch", n, len(orig), err)
		}
		if it.Next() {
			t.Fatalf("Next after a failed Reset")
		}
	}
	// Parse takes the first batch of a longer buffer.
	two := append(append([]byte(nil), orig...), orig...)
	b, err := Parse(two)
	if err != nil || len(b) != len(orig) {
		t.Fatalf("Parse of two batches: %d bytes, %v", len(b), err)
	}
}

func TestUnknownCodec(t *testing.T) {
	for _, codec := range []int16{5, 6, 7} {
		b := testBatch(t, CodecNone)
		a := b.Attributes()&^AttrCompressionMask | codec
		binary.BigEndian.PutUint16(b[AttributesOffset:], uint16(a))
		b.UpdateCRC()
		if err := b.Validate(); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("codec %d: Validate = %v, want ErrUnknownCodec", codec, err)
		}
		var it Iterator
		if err := it.Reset(b); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("codec %d: Reset = %v, want ErrUnknownCodec", codec, err)
		}
	}
	if _, err := AppendCompressed(nil, 5, []byte("x")); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("AppendCompressed(5) = %v", err)
	}
	if _, err := AppendDecompressed(nil, -1, []byte("x"), 0); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("AppendDecompressed(-1) = %v", err)
	}
	if _, err := NewBuilder(BatchOptions{Codec: 6}).Build(); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("Build with codec 6 = %v", err)
	}
}

func TestHeaderCorruptions(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(b Batch)
		want   error
	}{
		{"bad magic", func(b Batch) { b[MagicOffset] = 1 }, ErrCorruptRecord},
		{"length below header", func(b Batch) { binary.BigEndian.PutUint32(b[LengthOffset:], 10) }, ErrCorruptRecord},
		{"negative length", func(b Batch) { binary.BigEndian.PutUint32(b[LengthOffset:], 0xffffffff) }, ErrCorruptRecord},
		{"length past end", func(b Batch) { binary.BigEndian.PutUint32(b[LengthOffset:], uint32(len(b))) }, ErrShortBatch},
		{"negative last delta", func(b Batch) { binary.BigEndian.PutUint32(b[LastOffsetDeltaOffset:], 0xffffffff) }, ErrCorruptRecord},
		{"count over span", func(b Batch) { binary.BigEndian.PutUint32(b[RecordCountOffset:], 21) }, ErrCorruptRecord},
		{"negative count", func(b Batch) { binary.BigEndian.PutUint32(b[RecordCountOffset:], 0x80000000) }, ErrCorruptRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := testBatch(t, CodecNone)
			tc.mutate(b)
			if tc.want == ErrCorruptRecord {
				b.UpdateCRC() // so the CRC is not what catches it
			}
			if err := b.Validate(); !errors.Is(err, tc.want) {
				t.Errorf("Validate = %v, want %v", err, tc.want)
			}
			var it Iterator
			if err := it.Reset(b); !errors.Is(err, tc.want) {
				t.Errorf("Reset = %v, want %v", err, tc.want)
			}
		})
	}
	// A buffer longer than its batch validates only as Parse's result.
	b := append(testBatch(t, CodecNone), 0)
	if err := b.Validate(); !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("trailing byte: Validate = %v", err)
	}
}
