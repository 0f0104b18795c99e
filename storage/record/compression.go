package record

// Compression of a batch's records section. The whole section (every record,
// back to back) is compressed as one unit; the batch header stays plain.
//
//	codec   on the wire                                  we write
//	gzip    a gzip stream (RFC 1952), members may be     one gzip member
//	        concatenated
//	snappy  either one raw snappy block, or the xerial   one raw snappy block,
//	        framing of the Java client:                  as franz-go does
//	          "\x82SNAPPY\x00"  8-byte magic
//	          version           int32 (1)
//	          compatVersion     int32 (1)
//	          chunks:           int32 length, raw snappy block
//	lz4     an LZ4 frame (not the raw block format)      one frame, 64 KiB
//	                                                     independent blocks
//	zstd    one or more zstd frames                      one frame
//
// All chunk lengths are big-endian. Readers accept every form in the left
// column. Encoders and decoders come from klauspost/compress and
// pierrec/lz4 and are reused through sync.Pools, so that compressing or
// decompressing a batch allocates nothing once the pools are warm.
//
// Decompression is bounded: the output may not exceed a caller-supplied
// limit (DefaultMaxDecompressedSize unless told otherwise), whatever a
// header claims, so a small hostile batch cannot make us allocate without
// bound. Exceeding the limit is ErrCorruptRecord.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxDecompressedSize bounds a records section's decompressed size
// when the caller gives no limit.
const DefaultMaxDecompressedSize = 64 << 20

// xerialMagic opens a xerial-framed snappy stream; xerialHeaderLen adds the
// two int32 versions after it. Part of the format: do not change.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderLen = 16

// errTooLarge is what every codec reports when the output passes the limit.
var errTooLarge = fmt.Errorf("%w: decompressed records exceed the size limit", ErrCorruptRecord)

// AppendCompressed appends src, compressed with codec c, to dst and returns
// the extended slice. CodecNone appends src unchanged. An invalid codec is
// ErrUnknownCodec.
func AppendCompressed(dst []byte, c Codec, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		w := gzipWriters.Get().(*gzipWriter)
		defer gzipWriters.Put(w)
		w.out.b = dst
		w.w.Reset(&w.out)
		_, err := w.w.Write(src)
		if err == nil {
			err = w.w.Close()
		}
		dst, w.out.b = w.out.b, nil
		return dst, err
	case CodecSnappy:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, fmt.Errorf("record: %d bytes too large for snappy", len(src))
		}
		dst = grow(dst, n)
		out := s2.EncodeSnappy(dst[len(dst):len(dst)+n], src)
		return dst[:len(dst)+len(out)], nil
	case CodecLZ4:
		w := lz4Writers.Get().(*lz4Writer)
		defer lz4Writers.Put(w)
		w.out.b = dst
		w.w.Reset(&w.out)
		_, err := w.w.Write(src)
		if err == nil {
			err = w.w.Close()
		}
		w.w.Reset(nil)
		dst, w.out.b = w.out.b, nil
		return dst, err
	case CodecZstd:
		e := zstdEncoders.Get().(*zstdEncoder)
		defer zstdEncoders.Put(e)
		return e.enc.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("%w: %d", ErrUnknownCodec, c)
}

// AppendDecompressed appends the decompression of src, compressed with codec
// c, to dst and returns the extended slice. If the output would pass limit
// bytes (limit <= 0 means DefaultMaxDecompressedSize) it stops and returns
// ErrCorruptRecord; so does any malformed input. CodecNone appends src
// unchanged, subject to the same limit. An invalid codec is ErrUnknownCodec.
// On error the returned slice's contents past len(dst) are unspecified.
//
// Memory stays proportional to the limit, never to what the input claims:
// gzip and lz4 stream into a buffer that doubles up to limit+1 bytes;
// snappy checks each block's stated length before decoding it; zstd decodes
// with the limit as its WithDecoderMaxMemory, which it checks against each
// frame's stated size and as it decodes (several frames may overshoot to
// about twice the limit before the total is refused).
func AppendDecompressed(dst []byte, c Codec, src []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxDecompressedSize
	}
	switch c {
	case CodecNone:
		if len(src) > limit {
			return dst, errTooLarge
		}
		return append(dst, src...), nil
	case CodecGzip:
		r := gzipReaders.Get().(*gzipReader)
		defer gzipReaders.Put(r)
		r.src.Reset(src)
		if err := r.r.Reset(&r.src); err != nil {
			return dst, fmt.Errorf("%w: gzip: %v", ErrCorruptRecord, err)
		}
		dst, err := readLimited(dst, &r.r, limit)
		r.src.Reset(nil)
		if err != nil {
			return dst, codecErr("gzip", err)
		}
		return dst, nil
	case CodecSnappy:
		dst, err := decodeSnappy(dst, src, limit)
		if err != nil {
			return dst, codecErr("snappy", err)
		}
		return dst, nil
	case CodecLZ4:
		r := lz4Readers.Get().(*lz4Reader)
		defer lz4Readers.Put(r)
		r.src.Reset(src)
		r.r.Reset(&r.src)
		dst, err := readLimited(dst, r.r, limit)
		r.r.Reset(nil)
		r.src.Reset(nil)
		if err != nil {
			return dst, codecErr("lz4", err)
		}
		return dst, nil
	case CodecZstd:
		d := zstdDecoders.Get().(*zstdDecoder)
		defer zstdDecoders.Put(d)
		if d.limit != limit {
			// A nil reader only publishes the option; DecodeAll reads it.
			if err := d.dec.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(uint64(limit))); err != nil {
				return dst, fmt.Errorf("record: zstd: %v", err)
			}
			d.limit = limit
		}
		start := len(dst)
		out, err := d.dec.DecodeAll(src, dst)
		if err == nil && len(out)-start > limit {
			err = errTooLarge
		}
		if err != nil {
			return dst, codecErr("zstd", err)
		}
		return out, nil
	}
	return dst, fmt.Errorf("%w: %d", ErrUnknownCodec, c)
}

// codecErr reports a decompression failure as ErrCorruptRecord.
func codecErr(codec string, err error) error {
	if errors.Is(err, ErrCorruptRecord) {
		return err
	}
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return errTooLarge
	}
	return fmt.Errorf("%w: %s: %v", ErrCorruptRecord, codec, err)
}

// grow makes room for n more bytes after len(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

// readLimited appends everything r yields to dst, failing with errTooLarge
// once more than limit bytes arrive. The output buffer grows geometrically
// as data actually arrives, never on a header's say-so.
func readLimited(dst []byte, r io.Reader, limit int) ([]byte, error) {
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			// Double, but never past the limit (plus the byte that
			// detects it).
			c := min(max(2*cap(dst), len(dst)+4096), start+limit+1)
			nb := make([]byte, len(dst), c)
			copy(nb, dst)
			dst = nb
		}
		// Read at most one byte past the limit: enough to notice.
		room := min(cap(dst), start+limit+1)
		n, err := r.Read(dst[len(dst):room])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// decodeSnappy decodes a raw snappy block or a xerial-framed stream of them.
// Every block's decoded length (from its own header) is checked against the
// limit before anything is allocated for it.
func decodeSnappy(dst, src []byte, limit int) ([]byte, error) {
	if len(src) < xerialHeaderLen || !bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		return decodeSnappyBlock(dst, src, limit)
	}
	start := len(dst)
	// First pass: check the framing and the total claimed size, so the
	// output grows once.
	total := 0
	for rest := src[xerialHeaderLen:]; len(rest) > 0; {
		if len(rest) < 4 {
			return dst, errors.New("xerial chunk length truncated")
		}
		size := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(size) > uint64(len(rest)) {
			return dst, errors.New("xerial chunk overruns its batch")
		}
		n, err := s2.DecodedLen(rest[:size])
		if err != nil {
			return dst, err
		}
		if total += n; total > limit {
			return dst, errTooLarge
		}
		rest = rest[size:]
	}
	dst = grow(dst, total)
	for rest := src[xerialHeaderLen:]; len(rest) > 0; {
		size := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		var err error
		if dst, err = decodeSnappyBlock(dst, rest[:size], limit-(len(dst)-start)); err != nil {
			return dst, err
		}
		rest = rest[size:]
	}
	return dst, nil
}

// decodeSnappyBlock appends one raw snappy block, decoded, to dst.
func decodeSnappyBlock(dst, src []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return dst, err
	}
	if n > limit {
		return dst, errTooLarge
	}
	dst = grow(dst, n)
	if _, err := s2.Decode(dst[len(dst):len(dst)+n], src); err != nil {
		return dst, err
	}
	return dst[:len(dst)+n], nil
}

// sliceWriter is an io.Writer appending to b.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// The pooled codec states. Each pooled value bundles the codec with the
// small adapters it reads from or writes to, so using one allocates nothing.
type (
	gzipWriter struct {
		w   *gzip.Writer
		out sliceWriter
	}
	gzipReader struct {
		r   gzip.Reader
		src bytes.Reader
	}
	lz4Writer struct {
		w   *lz4.Writer
		out sliceWriter
	}
	lz4Reader struct {
		r   *lz4.Reader
		src bytes.Reader
	}
	zstdEncoder struct{ enc *zstd.Encoder }
	zstdDecoder struct {
		dec   *zstd.Decoder
		limit int // the WithDecoderMaxMemory in force
	}
)

var (
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
		return &gzipWriter{w: w}
	}}
	gzipReaders = sync.Pool{New: func() any { return new(gzipReader) }}

	lz4Writers = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// Kafka's Java client writes 64 KiB independent blocks; so do we.
		// Apply only fails on a bad option value, and these are constants.
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ConcurrencyOption(1))
		return &lz4Writer{w: w}
	}}
	lz4Readers = sync.Pool{New: func() any { return &lz4Reader{r: lz4.NewReader(nil)} }}

	zstdEncoders = sync.Pool{New: func() any {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			// A 1 MiB window covers a default-sized Kafka batch and makes
			// each EncodeAll cheaper to start than the 8 MiB default, with
			// identical output on batches that size; readers (ours, the
			// Java client) then need less memory too.
			zstd.WithWindowSize(1<<20),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			panic(fmt.Sprintf("record: zstd encoder options: %v", err)) // constant options: a programming error
		}
		e := &zstdEncoder{enc: enc}
		runtime.AddCleanup(e, func(enc *zstd.Encoder) { enc.Close() }, enc)
		return e
	}}
	zstdDecoders = sync.Pool{New: func() any {
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(DefaultMaxDecompressedSize),
		)
		if err != nil {
			panic(fmt.Sprintf("record: zstd decoder options: %v", err)) // constant options: a programming error
		}
		d := &zstdDecoder{dec: dec, limit: DefaultMaxDecompressedSize}
		runtime.AddCleanup(d, func(dec *zstd.Decoder) { dec.Close() }, dec)
		return d
	}}
)
