package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// Acks is how many replicas must have a record before the producer counts
// it as delivered. The zero value is AcksAll, Kafka's default since 3.0.
type Acks int8

const (
	// AcksAll (acks=-1): every in-sync replica has the record, and the ISR
	// has at least min.insync.replicas members. Survives any single failure.
	AcksAll Acks = iota
	// AcksLeader (acks=1): the leader appended it; lost if the leader dies
	// before a follower copies it.
	AcksLeader
	// AcksNone (acks=0): sent; offsets are reported as -1.
	AcksNone
)

// Wire is the value of ProduceRequest.acks: -1, 1 or 0.
func (a Acks) Wire() int32 {
	switch a {
	case AcksLeader:
		return 1
	case AcksNone:
		return 0
	}
	return -1
}

func (a Acks) String() string {
	switch a {
	case AcksLeader:
		return "1"
	case AcksNone:
		return "0"
	}
	return "all"
}

// ParseAcks reads "all" or "-1", "1", "0".
func ParseAcks(s string) (Acks, error) {
	switch s {
	case "all", "-1":
		return AcksAll, nil
	case "1":
		return AcksLeader, nil
	case "0":
		return AcksNone, nil
	}
	return 0, fmt.Errorf("acks %q: want all, 1 or 0", s)
}

// NoRetries as ProducerConfig.Retries fails a batch on its first error.
const NoRetries = -1

// ProducerConfig configures a Producer. Zero values take the defaults
// (Kafka's names in brackets).
type ProducerConfig struct {
	// Acks (acks): default AcksAll.
	Acks Acks
	// BatchSize (batch.size) is the size in bytes at which a partition's
	// batch is sent without waiting for Linger. Default 16 KiB. A record
	// larger than it gets a batch of its own.
	BatchSize int
	// Linger (linger.ms) is how long a batch that is not full waits for
	// more records. Default 5 ms; a negative value sends at once.
	Linger time.Duration
	// BufferMemory (buffer.memory) bounds the bytes of records accepted by
	// Send and not yet delivered. Default 32 MiB.
	BufferMemory int
	// MaxBlock (max.block.ms) is how long Send may block for buffer memory
	// or for metadata of the topic. Default 60 s.
	MaxBlock time.Duration
	// MaxRequestSize (max.request.size) bounds one Produce request and so
	// one record. Default 1 MiB.
	MaxRequestSize int
	// Codec compresses batches (compression.type). Default none.
	Codec record.Codec
	// Partitioner places records sent with Partition -1. Default
	// DefaultPartitioner (murmur2 on keys, sticky without).
	Partitioner Partitioner
	// Retries (retries) caps the resends of a batch after retriable errors.
	// 0 means no cap: DeliveryTimeout alone bounds them (Kafka's default);
	// NoRetries fails a batch on its first error.
	Retries int
	// RetryBackoff (retry.backoff.ms) is the first wait before a resend;
	// it doubles per attempt up to RetryBackoffMax (1 s), with ±20% jitter.
	// Default 100 ms.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// DeliveryTimeout (delivery.timeout.ms) bounds the time from Send to a
	// record's outcome, retries included. Default 2 min.
	DeliveryTimeout time.Duration
	// MaxInFlight (max.in.flight.requests.per.connection) is the number of
	// Produce requests outstanding to one broker. Default 5. An idempotent
	// producer also keeps up to min(MaxInFlight, 5) outstanding per
	// partition; without idempotence a partition has one. Order within a
	// partition holds whatever the value: see Producer.
	MaxInFlight int
	// DisableIdempotence (enable.idempotence=false) turns the idempotent
	// producer off: no producer id, one request in flight per partition,
	// and a resend after a lost answer may store records twice. Idempotence
	// is always off with AcksNone.
	DisableIdempotence bool
	// RequestTimeout (request.timeout.ms) bounds one Produce request; with
	// AcksAll it is also the time the leader may wait for the ISR. Default
	// the client's RequestTimeout.
	RequestTimeout time.Duration
}

func (c ProducerConfig) withDefaults(cl Config) ProducerConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BatchSize, 16<<10)
	def(&c.BufferMemory, 32<<20)
	def(&c.MaxRequestSize, 1<<20)
	def(&c.MaxInFlight, 5)
	switch {
	case c.Linger == 0:
		c.Linger = 5 * time.Millisecond
	case c.Linger < 0:
		c.Linger = 0
	}
	defD(&c.MaxBlock, 60*time.Second)
	defD(&c.RetryBackoff, 100*time.Millisecond)
	defD(&c.RetryBackoffMax, time.Second)
	defD(&c.DeliveryTimeout, 2*time.Minute)
	defD(&c.RequestTimeout, cl.RequestTimeout)
	if c.Partitioner == nil {
		c.Partitioner = DefaultPartitioner()
	}
	return c
}

// Errors of the producer itself (the cluster's are *Error).
var (
	// ErrProducerClosed: Send after Close, or a record still undelivered
	// when Close gave up.
	ErrProducerClosed = errors.New("client: producer closed")
	// ErrBufferFull: Send waited MaxBlock for buffer memory. The cluster is
	// not taking records as fast as they come (a broker down, a partition
	// without leader): fix that, or raise BufferMemory or MaxBlock.
	ErrBufferFull = errors.New("client: producer buffer memory exhausted")
	// ErrDeliveryTimeout: a record was not acknowledged within
	// DeliveryTimeout. The error wraps the last error its batch got, if any
	// (errors.As(err, new(*Error))).
	ErrDeliveryTimeout = errors.New("client: delivery timeout")
)

const pbInvalidRecord = pb.ErrorCode_INVALID_RECORD

// unknownTopicWait is how long Send waits for a topic that the metadata
// does not list to appear: a topic just created takes a moment to reach
// every broker. Past it the record fails with UNKNOWN_TOPIC_OR_PARTITION.
const unknownTopicWait = time.Second

// AnyPartition as Record.Partition lets the Partitioner choose. Note that
// the zero value, 0, is partition 0: set AnyPartition explicitly.
const AnyPartition int32 = -1

// RecordMetadata is where a record landed.
type RecordMetadata struct {
	Topic     string
	Partition int32
	// Offset is the record's offset; -1 with AcksNone.
	Offset int64
	// Timestamp is the record's timestamp: its CreateTime, or the broker's
	// append time for a topic with message.timestamp.type=LogAppendTime.
	Timestamp time.Time
}

// Future is the outcome of one Send. It is safe for concurrent use.
type Future struct {
	b   *batch
	idx int32
	ts  int64
	err error // failed before it reached a batch
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed once the outcome is known.
func (f *Future) Done() <-chan struct{} {
	if f.b == nil {
		return closedChan
	}
	return f.b.done
}

// Wait blocks until the outcome is known or ctx ends (which abandons only
// the wait, not the record), and returns where the record landed or why it
// was not delivered: an *Error from the cluster (Retriable false, or true
// with ErrDeliveryTimeout), ErrBufferFull, ErrProducerClosed, or ctx's error.
func (f *Future) Wait(ctx context.Context) (RecordMetadata, error) {
	if f.b == nil {
		return RecordMetadata{}, f.err
	}
	select {
	case <-f.b.done:
	case <-ctx.Done():
		return RecordMetadata{}, ctx.Err()
	}
	return f.result()
}

func (f *Future) result() (RecordMetadata, error) {
	b, idx := f.b.leaf(int(f.idx))
	if b.err != nil {
		return RecordMetadata{}, b.err
	}
	md := RecordMetadata{Topic: b.tp.topic, Partition: b.tp.partition, Offset: -1, Timestamp: time.UnixMilli(f.ts)}
	if b.base >= 0 {
		md.Offset = b.base + int64(idx)
	}
	if b.appendTime >= 0 {
		md.Timestamp = time.UnixMilli(b.appendTime)
	}
	return md, nil
}

// Producer sends records to partition leaders in batches. It is safe for
// concurrent use by many goroutines.
//
// Records are appended (encoded once, in place) to a per-partition batch;
// a sender goroutine sends a partition's batches when one is full
// (BatchSize), has lingered (Linger), or Flush, Close or a Send waiting for
// memory asks for it. It groups them by leader into one Produce request per
// broker, at most MaxInFlight requests per broker.
//
// Order and idempotence: by default the producer is idempotent, as Kafka's
// is since 3.0. It gets a producer id from a broker (InitProducerId) and
// stamps each batch with it, an epoch and the sequence number of its first
// record, counted per partition. A partition leader appends a producer's
// batches only in sequence and answers a resend of stored records with the
// offsets they got (see storage/producerstate.go). So a partition can have
// up to min(MaxInFlight, 5) requests in flight (while one is, the next goes
// once its ready batches fill half of MaxRequestSize: fewer, larger requests
// cost the broker less per byte) while a retry can neither reorder nor
// duplicate records: records sent from one goroutine to one
// partition are stored in Send order, once. After a failure, a partition
// sends one request at a time until the failed ones are through; when its
// sequence is broken (a batch failed for good, or the leader lost the
// producer's state) it raises its epoch and starts its unacknowledged
// batches again from sequence 0, as Kafka's producer does (KIP-360).
// Without idempotence (DisableIdempotence, AcksNone) a partition has one
// request in flight (carrying its ready batches) and a failed batch is
// resent before any later one, which keeps the order too, but a resend
// after a lost answer may store records twice.
//
// Retries: retriable errors (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE,
// NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, a broker that does not answer,
// ...) refresh the metadata and resend after a backoff until
// DeliveryTimeout; every acknowledged record is stored at the offset
// reported. A batch the broker refuses as MESSAGE_TOO_LARGE (a topic whose
// max.message.bytes is below BatchSize) is split in halves and resent, as
// Kafka's producer does, so only a record too large by itself fails. Other
// errors fail the batch's records with the *Error. Futures of one partition
// complete in order.
type Producer struct {
	c          *Client
	cfg        ProducerConfig
	acc        *accumulator
	mem        *memory
	idempotent bool
	pids       chan pidResult // InitProducerId answers

	meta    atomic.Pointer[Metadata]
	refresh chan struct{} // asks the metadata goroutine for a refresh
	wake    chan struct{} // wakes the sender
	results chan *produceResult

	flushing atomic.Int32
	closing  atomic.Bool
	stop     chan struct{} // closed by Close: the goroutines end
	rpcCtx   context.Context
	abort    context.CancelFunc // cancels requests in flight (Close gave up)
	metaCtx  context.Context
	metaStop context.CancelFunc // cancels a metadata refresh under way (Close)
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool

	// onRequest, if set (tests, before the first Send), sees each Produce
	// request just before it is sent.
	onRequest func(*wire.ProduceRequest)
}

// NewProducer makes a producer on c; it does not close c.
func NewProducer(c *Client, cfg ProducerConfig) (*Producer, error) {
	cfg = cfg.withDefaults(c.cfg)
	if !cfg.Codec.Valid() {
		return nil, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("codec %d: want none, gzip, snappy, lz4 or zstd", cfg.Codec)}
	}
	if cfg.Acks < AcksAll || cfg.Acks > AcksNone {
		return nil, &Error{Code: pb.ErrorCode_INVALID_REQUIRED_ACKS, Message: fmt.Sprintf("acks %d: use AcksAll, AcksLeader or AcksNone", cfg.Acks)}
	}
	p := &Producer{
		c: c, cfg: cfg,
		acc:     newAccumulator(cfg.BatchSize, cfg.Linger, cfg.DeliveryTimeout, record.BatchOptions{Codec: cfg.Codec}),
		mem:     newMemory(cfg.BufferMemory),
		refresh: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		results: make(chan *produceResult, 16),
		stop:    make(chan struct{}),
	}
	if !cfg.DisableIdempotence && cfg.Acks != AcksNone {
		p.idempotent = true
		p.pids = make(chan pidResult, 1)
		p.acc.setIdempotent(cfg.MaxInFlight)
	}
	p.rpcCtx, p.abort = context.WithCancel(context.Background())
	p.metaCtx, p.metaStop = context.WithCancel(context.Background())
	p.wg.Add(2)
	go p.runSender()
	go p.runMetadata()
	return p, nil
}

// Send appends rec to its partition's batch and returns at once with a
// Future. It reads rec's Topic, Partition (AnyPartition: the Partitioner
// chooses), Key, Value, Headers and Timestamp (zero: now); Offset and
// LeaderEpoch are the broker's to assign and ignored. Send copies what it
// needs before returning, so rec and its slices may be reused at once.
// It blocks only when it must: for the topic's metadata (up to MaxBlock;
// a topic the cluster does not list fails after about a second) or for
// buffer memory (up to MaxBlock, then ErrBufferFull). ctx bounds only that
// blocking; once Send returns, the record's delivery is bounded by
// DeliveryTimeout. Errors known before sending (unknown topic, record too
// large, closed producer) are reported by the Future.
func (p *Producer) Send(ctx context.Context, rec *Record) *Future {
	f, err := p.append(ctx, rec)
	if err != nil {
		return &Future{err: err}
	}
	return f
}

// SendSync sends rec and waits for its outcome.
func (p *Producer) SendSync(ctx context.Context, rec *Record) (RecordMetadata, error) {
	return p.Send(ctx, rec).Wait(ctx)
}

// recordSize is an upper bound of rec's encoded size in a batch (varints
// at their longest); it is what the record holds of BufferMemory.
func recordSize(rec *Record) int {
	n := 5 + 1 + 10 + 5 + 5 + len(rec.Key) + 5 + len(rec.Value) + 5
	for _, h := range rec.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

func (p *Producer) append(ctx context.Context, rec *Record) (*Future, error) {
	if p.closing.Load() {
		return nil, ErrProducerClosed
	}
	if rec.Topic == "" {
		return nil, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: "record without a topic"}
	}
	size := recordSize(rec)
	if size+record.HeaderSize > p.cfg.MaxRequestSize || size > p.cfg.BufferMemory {
		return nil, &Error{Code: pb.ErrorCode_MESSAGE_TOO_LARGE,
			Message: fmt.Sprintf("a record of about %d bytes is larger than MaxRequestSize %d or BufferMemory %d; raise them (and the topic's max.message.bytes) or send smaller records",
				size+record.HeaderSize, p.cfg.MaxRequestSize, p.cfg.BufferMemory)}
	}
	n, err := p.partitionsOf(ctx, rec.Topic)
	if err != nil {
		return nil, err
	}
	part := rec.Partition
	byPartitioner := part < 0
	if byPartitioner {
		part = p.cfg.Partitioner.Partition(rec.Topic, rec.Key, n)
	}
	if part < 0 || int(part) >= n {
		return nil, &Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
			Message: fmt.Sprintf("topic %q has %d partitions, no partition %d", rec.Topic, n, part)}
	}
	if err := p.mem.acquire(ctx, size, p.cfg.MaxBlock, p.stop, p.signal); err != nil {
		return nil, err
	}
	now := time.Now()
	ts := now.UnixMilli()
	if !rec.Timestamp.IsZero() {
		ts = rec.Timestamp.UnixMilli()
	}
	obs, sticky := p.cfg.Partitioner.(NewBatchObserver)
	sticky = sticky && byPartitioner
	tp := topicPartition{rec.Topic, part}
	res, err := p.acc.append(tp, now, ts, rec.Key, rec.Value, rec.Headers, size, sticky)
	if err == nil && res.aborted {
		obs.OnNewBatch(rec.Topic, part, n)
		if tp.partition = p.cfg.Partitioner.Partition(rec.Topic, rec.Key, n); tp.partition < 0 || int(tp.partition) >= n {
			tp.partition = part
		}
		res, err = p.acc.append(tp, now, ts, rec.Key, rec.Value, rec.Headers, size, false)
	}
	if err != nil {
		p.mem.release(size)
		return nil, err
	}
	if res.newBatch {
		p.signal()
	}
	return &Future{b: res.b, idx: int32(res.index), ts: ts}, nil
}

// partitionsOf is the topic's partition count, from the cached metadata or,
// if the topic is not in it, from refreshes: up to unknownTopicWait while
// brokers answer without it, up to MaxBlock while none answers.
func (p *Producer) partitionsOf(ctx context.Context, topic string) (int, error) {
	if m := p.meta.Load(); m != nil {
		if parts := m.Topics[topic]; len(parts) > 0 {
			return len(parts), nil
		}
	}
	start := time.Now()
	for {
		m, err := p.c.RefreshMetadata(ctx)
		if err == nil {
			p.storeMeta(m)
			if parts := m.Topics[topic]; len(parts) > 0 {
				return len(parts), nil
			}
			if time.Since(start) >= min(unknownTopicWait, p.cfg.MaxBlock) {
				return 0, &Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
					Message: fmt.Sprintf("topic %q does not exist; create it first (strata topics create %s)", topic, topic)}
			}
		} else if ctx.Err() != nil {
			return 0, ctx.Err()
		} else if time.Since(start) >= p.cfg.MaxBlock {
			return 0, fmt.Errorf("no metadata for topic %q within MaxBlock %v: %w", topic, p.cfg.MaxBlock, err)
		}
		select {
		case <-time.After(p.cfg.RetryBackoff):
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-p.stop:
			return 0, ErrProducerClosed
		}
	}
}

// storeMeta keeps m unless a newer view is stored already.
func (p *Producer) storeMeta(m *Metadata) {
	for {
		cur := p.meta.Load()
		if cur != nil && cur.Offset > m.Offset {
			return
		}
		if p.meta.CompareAndSwap(cur, m) {
			return
		}
	}
}

// signal wakes the sender.
func (p *Producer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// requestRefresh asks the metadata goroutine for a refresh.
func (p *Producer) requestRefresh() {
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// Flush sends every record appended so far at once (not waiting for
// Linger) and waits until each has its outcome, or ctx ends. It returns
// nil even if some records failed: their Futures say so.
func (p *Producer) Flush(ctx context.Context) error {
	p.flushing.Add(1)
	defer p.flushing.Add(-1)
	p.signal()
	for _, done := range p.acc.incomplete() {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close refuses further records, flushes, and stops the producer's
// goroutines. If ctx ends first, requests in flight are cancelled, records
// not yet delivered fail with ErrProducerClosed (some may still have been
// stored) and Close returns ctx's error. A Send racing with Close may fail
// with ErrProducerClosed. Close does not close the Client. Calling it
// again returns nil.
func (p *Producer) Close(ctx context.Context) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.closing.Store(true)
	err := p.Flush(ctx)
	if err != nil {
		p.abort()
	}
	close(p.stop)
	p.metaStop()
	p.wg.Wait()
	p.abort()
	return err
}

// runMetadata refreshes the metadata on request (after NOT_LEADER and the
// like: at most once per RetryBackoff) and every MetadataMaxAge.
func (p *Producer) runMetadata() {
	defer p.wg.Done()
	tick := time.NewTicker(p.c.cfg.MetadataMaxAge)
	defer tick.Stop()
	for {
		select {
		case <-p.refresh:
		case <-tick.C:
		case <-p.stop:
			return
		}
		ctx, cancel := context.WithTimeout(p.metaCtx, p.cfg.RequestTimeout)
		m, err := p.c.RefreshMetadata(ctx)
		cancel()
		if err == nil {
			p.storeMeta(m)
			p.signal()
		}
		select {
		case <-time.After(p.cfg.RetryBackoff / 2):
		case <-p.stop:
			return
		}
	}
}

// backoff is the wait before attempt n+1 (n >= 1 failures so far).
func (p *Producer) backoff(n int) time.Duration {
	d := float64(p.cfg.RetryBackoff) * math.Pow(2, float64(min(n-1, 20)))
	d = min(d, float64(max(p.cfg.RetryBackoffMax, p.cfg.RetryBackoff)))
	return time.Duration(d * (0.8 + 0.4*rand.Float64()))
}
