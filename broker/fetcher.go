package broker

// The follower side of replication: Kafka's ReplicaFetcherManager and
// ReplicaFetcherThread.
//
// A FetcherManager runs one goroutine per source broker (a leader this
// broker follows partitions of). Each round of a source's loop:
//
//	1. truncate   partitions that start following (AddPartition) or whose
//	              leader epoch changed ask the leader, in one
//	              OffsetForLeaderEpoch request, where their latest epoch ends
//	              and truncate there (Partition.TruncateForLeaderEpoch) —
//	              never simply to their high watermark. A replica with no
//	              epoch in its log needs no truncation.
//	2. fetch      one Fetch for every other ready partition, from its log end
//	              offset, carrying the leader epoch the partition's state
//	              names (the leader fences a stale or future one).
//	3. apply      whole batches are appended with the leader's high
//	              watermark (a trailing partial batch is dropped and fetched
//	              again); errors are handled per partition (see applyLocked).
//
// A partition error delays only that partition (Backoff); a transport or
// request-level error delays the whole source, which keeps its partitions
// and retries: a dead leader is normal during a failover, and the metadata
// moves the partitions to the new leader with AddPartition.
//
// Concurrency. Each source has a mutex over its partition set that is held
// while a response is applied (appends and truncations write the page cache)
// but never across an RPC; AddPartition and RemovePartition take it, so once
// they return the old source no longer writes to the partition. Control calls
// (Add, Remove, Close) are serialized by their own mutex; the manager's map
// mutex is held only for map updates.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// FetcherConfig configures the replica fetchers. Zero fields take the defaults.
type FetcherConfig struct {
	// MaxWait is the long poll's max_wait (default 500ms).
	MaxWait time.Duration
	// MinBytes is the long poll's min_bytes (default 1).
	MinBytes int32
	// MaxBytes caps the bytes of one fetch answer (default 16 MiB).
	MaxBytes int32
	// PartitionMaxBytes caps one partition's bytes per fetch (default 1 MiB).
	PartitionMaxBytes int32
	// Backoff is the wait after an error, of a partition or of the source
	// (default 100ms).
	Backoff time.Duration
	// ThrottleBytesPerSec limits the replication bytes of the partitions added
	// as throttled (reassignment traffic), over all sources together; 0: off.
	ThrottleBytesPerSec int64
	// RequestTimeout bounds one RPC beyond MaxWait, so a leader that stops
	// answering without closing the connection is given up (default 30s).
	RequestTimeout time.Duration
	// StreamRetry is how long a source whose leader answered FetchStream
	// with Unimplemented (an older broker) fetches with unary Fetch before
	// it tries the stream again: the leader may have been upgraded in place,
	// at the same address (default 1m).
	StreamRetry time.Duration
}

func (c FetcherConfig) withDefaults() FetcherConfig {
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.MinBytes <= 0 {
		c.MinBytes = 1
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 16 << 20
	}
	if c.PartitionMaxBytes <= 0 {
		c.PartitionMaxBytes = 1 << 20
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.StreamRetry <= 0 {
		c.StreamRetry = time.Minute
	}
	return c
}

// fetcherRecvHeadroom is what a Fetch answer may hold beyond max_bytes: the
// first batch is answered whole even past the cap (up to the topic's
// max.message.bytes), plus the message's own framing.
const fetcherRecvHeadroom = 64 << 20

// fetcherThrottleSlack is the throttle's burst beyond one long poll (see
// newFetchThrottle): the rest of a fetch round.
const fetcherThrottleSlack = 250 * time.Millisecond

// fetcherFastEmptyLimit is how many early empty fetch answers in a row make
// a source idle for a backoff before the next fetch.
const fetcherFastEmptyLimit = 3

// fetcherCloseTimeout bounds how long Close waits for the source goroutines.
const fetcherCloseTimeout = 5 * time.Second

// FetcherManager runs this broker's replica fetchers: one goroutine per
// source broker, each fetching every partition it follows from that broker
// in one Fetch request.
type FetcherManager struct {
	brokerID    int32
	brokerEpoch func() int64
	dial        func(ctx context.Context, leaderID int32, addr string) (pb.BrokerServiceClient, error)
	cfg         FetcherConfig
	logger      *slog.Logger
	onAppend    func(p *Partition)
	throttle    atomic.Pointer[fetchThrottle] // nil when off; SetThrottle swaps it

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	opMu sync.Mutex // serializes AddPartition, RemovePartition and Close

	mu struct {
		sync.Mutex
		closed  bool
		sources map[int32]*fetcherSource
		owner   map[*Partition]*fetcherSource
	}
}

// NewFetcherManager returns a manager for broker brokerID. brokerEpoch is
// read at every fetch (the leader refuses a stale incarnation). dial returns
// a client for a leader; it is called when a source starts and when its
// address changes, and the caller owns (and closes) the connections it makes.
// onAppend, if not nil, runs after a fetch appended records to p or moved its
// high watermark, outside the fetcher's locks. logger may be nil.
func NewFetcherManager(brokerID int32, brokerEpoch func() int64,
	dial func(ctx context.Context, leaderID int32, addr string) (pb.BrokerServiceClient, error),
	cfg FetcherConfig, logger *slog.Logger, onAppend func(p *Partition)) *FetcherManager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if brokerEpoch == nil {
		brokerEpoch = func() int64 { return -1 }
	}
	cfg = cfg.withDefaults()
	m := &FetcherManager{brokerID: brokerID, brokerEpoch: brokerEpoch, dial: dial, cfg: cfg,
		logger: logger.With("component", "replica-fetcher"), onAppend: onAppend}
	m.SetThrottle(cfg.ThrottleBytesPerSec)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.mu.sources = map[int32]*fetcherSource{}
	m.mu.owner = map[*Partition]*fetcherSource{}
	return m
}

// SetThrottle changes the bytes/s cap of throttled partitions' traffic
// (0: off), from the next fetch on. The same rate keeps the current bucket.
func (m *FetcherManager) SetThrottle(bytesPerSec int64) {
	cur := m.throttle.Load()
	switch {
	case bytesPerSec <= 0:
		m.throttle.Store(nil)
	case cur == nil || int64(cur.rate) != bytesPerSec:
		m.throttle.Store(newFetchThrottle(bytesPerSec, m.cfg.MaxWait+fetcherThrottleSlack, nil))
	}
}

// Throttle is the current bytes/s cap of throttled traffic, 0 when off.
func (m *FetcherManager) Throttle() int64 {
	if t := m.throttle.Load(); t != nil {
		return int64(t.rate)
	}
	return 0
}

// AddPartition (re)starts following p from broker leaderID at leaderAddr:
// p first truncates by leader epoch, then fetches. A partition followed from
// another source moves (once this returns the old source no longer writes to
// it); one already followed from leaderID starts over with a truncation.
// throttled puts its traffic under ThrottleBytesPerSec.
func (m *FetcherManager) AddPartition(p *Partition, leaderID int32, leaderAddr string, throttled bool) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return
	}
	old := m.mu.owner[p]
	src := m.mu.sources[leaderID]
	if src == nil {
		src = m.newSourceLocked(leaderID, leaderAddr)
		m.mu.sources[leaderID] = src
	}
	m.mu.owner[p] = src
	m.mu.Unlock()

	if old != nil && old != src {
		old.remove(p)
		m.stopIfEmpty(old)
	}
	src.add(p, leaderAddr, throttled)
}

// RemovePartition stops following p. Once it returns no fetcher writes to p.
func (m *FetcherManager) RemovePartition(p *Partition) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	src := m.mu.owner[p]
	delete(m.mu.owner, p)
	m.mu.Unlock()
	if src != nil {
		src.remove(p)
		m.stopIfEmpty(src)
	}
}

// Partitions is how many partitions are followed from leaderID.
func (m *FetcherManager) Partitions(leaderID int32) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, src := range m.mu.owner {
		if src.leaderID == leaderID {
			n++
		}
	}
	return n
}

// Close stops every fetcher and waits for them (at most a few seconds: an
// RPC is cancelled at once, an append in progress finishes). Partitions are
// left as they are.
func (m *FetcherManager) Close() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	m.mu.closed = true
	m.mu.sources = map[int32]*fetcherSource{}
	m.mu.owner = map[*Partition]*fetcherSource{}
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(fetcherCloseTimeout):
		m.logger.Error("replica fetchers did not stop in time", "timeout", fetcherCloseTimeout)
	}
}

// stopIfEmpty ends a source that follows nothing any more. Called under opMu.
func (m *FetcherManager) stopIfEmpty(src *fetcherSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.mu.owner {
		if s == src {
			return
		}
	}
	if m.mu.sources[src.leaderID] == src {
		delete(m.mu.sources, src.leaderID)
	}
	src.cancel()
}

func (m *FetcherManager) newSourceLocked(leaderID int32, addr string) *fetcherSource {
	s := &fetcherSource{m: m, leaderID: leaderID, wake: make(chan struct{}, 1),
		logger: m.logger.With("leader", leaderID)}
	s.ctx, s.cancel = context.WithCancel(m.ctx)
	s.mu.addr = addr
	s.mu.parts = map[*Partition]*fetcherPartition{}
	m.wg.Add(1)
	go s.run()
	return s
}

// fetcherSource fetches the partitions this broker follows from one leader.
type fetcherSource struct {
	m        *FetcherManager
	leaderID int32
	logger   *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wake     chan struct{} // a partition was added: stop idling

	mu struct {
		sync.Mutex
		addr  string
		parts map[*Partition]*fetcherPartition
	}

	// Owned by the source's goroutine.
	client     pb.BrokerServiceClient
	dialedAddr string
	stream     *fetchStream // open on client (fetchstream.go), or nil
	streamless time.Time    // until then unary Fetch: the leader answered FetchStream Unimplemented
	failing    bool         // the last round failed at the transport (logged once)
	fastEmpty  int          // empty answers in a row that came well before max_wait
}

// fetcherPartition is a source's state of one partition; guarded by the
// source's mutex. AddPartition replaces it, so a response to a request made
// for an older one is dropped.
type fetcherPartition struct {
	p         *Partition
	throttled bool

	needTrunc  bool      // truncate by leader epoch before fetching
	truncEpoch int32     // the state's leader epoch at the last truncation
	truncated  bool      // truncated since the last successful fetch
	delayUntil time.Time // no request for it before then (after an error)
	lastErr    pb.ErrorCode
}

func (s *fetcherSource) add(p *Partition, addr string, throttled bool) {
	s.mu.Lock()
	s.mu.addr = addr
	s.mu.parts[p] = &fetcherPartition{p: p, throttled: throttled, needTrunc: true, truncEpoch: -1}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fetcherSource) remove(p *Partition) {
	s.mu.Lock()
	delete(s.mu.parts, p)
	s.mu.Unlock()
}

func (s *fetcherSource) run() {
	defer s.m.wg.Done()
	defer s.closeStream()
	cfg := &s.m.cfg
	for s.ctx.Err() == nil {
		err := s.ensureClient()
		if err == nil {
			err = s.truncate()
		}
		var idle time.Duration
		if err == nil {
			idle, err = s.fetch()
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			if !s.failing {
				s.logger.Warn("replica fetch failed; backing off", "err", err, "backoff", cfg.Backoff)
				s.failing = true
			}
			s.sleep(cfg.Backoff, false)
			continue
		}
		if s.failing {
			s.logger.Info("replica fetch resumed")
			s.failing = false
		}
		if idle > 0 {
			s.sleep(idle, true)
		}
	}
}

// sleep waits d, or until the source stops, or (wakeable) a partition is added.
func (s *fetcherSource) sleep(d time.Duration, wakeable bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake <-chan struct{}
	if wakeable {
		wake = s.wake
	}
	select {
	case <-s.ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

func (s *fetcherSource) ensureClient() error {
	s.mu.Lock()
	addr := s.mu.addr
	s.mu.Unlock()
	if s.client != nil && addr == s.dialedAddr {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.m.cfg.RequestTimeout)
	defer cancel()
	c, err := s.m.dial(ctx, s.leaderID, addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	s.closeStream()
	s.client, s.dialedAddr, s.streamless = c, addr, time.Time{}
	return nil
}

// fetcherKey names a partition on the wire.
type fetcherKey struct {
	topic string
	index int32
}

// readyLocked reports whether fp may be asked about now and returns its
// state. A partition this broker leads, or led by another broker than the
// source, waits for the metadata to move it.
func (s *fetcherSource) readyLocked(fp *fetcherPartition, now time.Time) (PartitionState, bool) {
	if now.Before(fp.delayUntil) {
		return PartitionState{}, false
	}
	st, leader := fp.p.State()
	if leader || st.Leader != s.leaderID {
		fp.delayUntil = now.Add(s.m.cfg.Backoff)
		return PartitionState{}, false
	}
	if !fp.needTrunc && st.LeaderEpoch != fp.truncEpoch {
		fp.needTrunc = true // a new leader epoch: truncate again first
	}
	return st, true
}

// delayLocked puts fp aside for a backoff after an error, logging a change of error.
func (s *fetcherSource) delayLocked(fp *fetcherPartition, st PartitionState, code pb.ErrorCode, msg string) {
	fp.delayUntil = time.Now().Add(s.m.cfg.Backoff)
	if code != fp.lastErr {
		s.logger.Info("replica fetch error; partition backs off", "topic", st.Topic, "partition", st.Index,
			"code", code.String(), "msg", msg)
		fp.lastErr = code
	}
}

type fetcherTruncItem struct {
	fp *fetcherPartition
	st PartitionState
}

// truncate runs the epoch truncation of the partitions that need it, in one
// OffsetForLeaderEpoch request.
func (s *fetcherSource) truncate() error {
	now := time.Now()
	var items []fetcherTruncItem
	byKey := map[fetcherKey]int{}
	s.mu.Lock()
	for _, fp := range s.mu.parts {
		st, ok := s.readyLocked(fp, now)
		if !ok || !fp.needTrunc {
			continue
		}
		if fp.p.LatestEpoch() < 0 {
			// Nothing in the log carries an epoch: nothing to compare.
			fp.needTrunc, fp.truncEpoch, fp.truncated = false, st.LeaderEpoch, true
			continue
		}
		byKey[fetcherKey{st.Topic, st.Index}] = len(items)
		items = append(items, fetcherTruncItem{fp, st})
	}
	s.mu.Unlock()
	if len(items) == 0 {
		return nil
	}
	req := &pb.OffsetForLeaderEpochRequest{ReplicaId: s.m.brokerID}
	topics := map[string]*pb.OffsetForLeaderEpochTopic{}
	for _, it := range items {
		t := topics[it.st.Topic]
		if t == nil {
			t = &pb.OffsetForLeaderEpochTopic{Topic: it.st.Topic}
			topics[it.st.Topic] = t
			req.Topics = append(req.Topics, t)
		}
		t.Partitions = append(t.Partitions, &pb.OffsetForLeaderEpochPartition{
			Partition: it.st.Index, CurrentLeaderEpoch: it.st.LeaderEpoch, LeaderEpoch: it.fp.p.LatestEpoch()})
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.m.cfg.RequestTimeout)
	resp, err := s.client.OffsetForLeaderEpoch(ctx, req)
	cancel()
	if err != nil {
		return fmt.Errorf("rpc OffsetForLeaderEpoch: %w", err)
	}
	answered := make([]*pb.OffsetForLeaderEpochPartitionResult, len(items))
	for _, t := range resp.GetTopics() {
		for _, r := range t.GetPartitions() {
			if i, ok := byKey[fetcherKey{t.GetTopic(), r.GetPartition()}]; ok {
				answered[i] = r
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, it := range items {
		fp, r := it.fp, answered[i]
		if s.mu.parts[fp.p] != fp {
			continue // removed or re-added meanwhile
		}
		if r == nil {
			s.delayLocked(fp, it.st, pb.ErrorCode_UNKNOWN_SERVER_ERROR, "no answer for the partition")
			continue
		}
		if r.GetErrorCode() != pb.ErrorCode_NONE {
			s.delayLocked(fp, it.st, r.GetErrorCode(), r.GetErrorMessage())
			continue
		}
		before := fp.p.Log().LogEndOffset()
		leo, err := fp.p.TruncateForLeaderEpoch(r.GetLeaderEpoch(), r.GetEndOffset())
		if err != nil {
			s.delayLocked(fp, it.st, pb.ErrorCode_STORAGE_ERROR, err.Error())
			continue
		}
		if leo < before {
			s.logger.Info("truncated by leader epoch", "topic", it.st.Topic, "partition", it.st.Index,
				"epoch", r.GetLeaderEpoch(), "leader_end", r.GetEndOffset(), "from", before, "to", leo)
		}
		fp.needTrunc, fp.truncEpoch, fp.truncated = false, it.st.LeaderEpoch, true
	}
	return nil
}

// fetcherEntry is one partition of a Fetch in flight.
type fetcherEntry struct {
	fp       *fetcherPartition
	st       PartitionState
	offset   int64 // fetch_offset: the log end when the request was made
	reserved int64 // throttle bytes reserved (from th)
	th       *fetchThrottle
	done     bool
}

// fetch sends one Fetch for the ready partitions and applies the answer. It
// returns how long to idle when nothing could be asked (or the leader
// answered an empty long poll early), and an error for a failed RPC.
func (s *fetcherSource) fetch() (time.Duration, error) {
	cfg := &s.m.cfg
	now := time.Now()
	idle := cfg.MaxWait // until the earliest partition is ready
	var entries []*fetcherEntry
	byKey := map[fetcherKey]*fetcherEntry{}
	req := &pb.FetchRequest{ReplicaId: s.m.brokerID, ReplicaEpoch: s.m.brokerEpoch(),
		MaxWaitMs: int32(cfg.MaxWait / time.Millisecond), MinBytes: cfg.MinBytes, MaxBytes: cfg.MaxBytes}
	topics := map[string]*pb.FetchTopic{}
	truncPending := false
	th := s.m.throttle.Load()
	s.mu.Lock()
	for _, fp := range s.mu.parts {
		st, ok := s.readyLocked(fp, now)
		if !ok {
			idle = min(idle, max(fp.delayUntil.Sub(now), time.Millisecond))
			continue
		}
		if fp.needTrunc {
			truncPending = true
			continue
		}
		maxBytes := int64(cfg.PartitionMaxBytes)
		var reserved int64
		if fp.throttled && th != nil {
			if reserved = th.reserve(maxBytes); reserved == 0 {
				idle = min(idle, max(th.delay(), time.Millisecond))
				continue
			}
			maxBytes = reserved
		}
		e := &fetcherEntry{fp: fp, st: st, offset: fp.p.Log().LogEndOffset(), reserved: reserved, th: th}
		entries = append(entries, e)
		byKey[fetcherKey{st.Topic, st.Index}] = e
		t := topics[st.Topic]
		if t == nil {
			t = &pb.FetchTopic{Topic: st.Topic}
			topics[st.Topic] = t
			req.Topics = append(req.Topics, t)
		}
		t.Partitions = append(t.Partitions, &pb.FetchPartition{
			Partition: st.Index, FetchOffset: e.offset, CurrentLeaderEpoch: st.LeaderEpoch,
			PartitionMaxBytes: int32(maxBytes), LogStartOffset: fp.p.Log().LogStartOffset(),
			LastFetchedEpoch: fp.p.LatestEpoch()})
	}
	s.mu.Unlock()
	if truncPending {
		idle = 0
	}
	if len(entries) == 0 {
		return idle, nil
	}
	defer func() { // give back what was reserved and not settled
		for _, e := range entries {
			if !e.done && e.reserved > 0 {
				e.th.settle(e.reserved, 0)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(s.ctx, cfg.MaxWait+cfg.RequestTimeout)
	start := time.Now()
	// gRPC's default receive limit (4 MiB) is below what a fetch may answer.
	resp, release, err := s.rpcFetch(ctx, req, grpc.MaxCallRecvMsgSize(int(cfg.MaxBytes)+fetcherRecvHeadroom))
	cancel()
	if err != nil {
		return 0, fmt.Errorf("rpc Fetch: %w", err)
	}
	defer release() // after the records were appended below

	var appended []*Partition
	got := 0
	errored := false
	s.mu.Lock()
	for _, t := range resp.GetTopics() {
		for _, r := range t.GetPartitions() {
			e := byKey[fetcherKey{t.GetTopic(), r.GetPartition()}]
			if e == nil || e.done {
				continue
			}
			e.done = true
			if e.reserved > 0 {
				e.th.settle(e.reserved, int64(len(r.GetRecords())))
			}
			got += len(r.GetRecords())
			if r.GetErrorCode() != pb.ErrorCode_NONE {
				errored = true
			}
			if s.mu.parts[e.fp.p] != e.fp {
				continue // removed or re-added meanwhile
			}
			if s.applyLocked(e, r) {
				appended = append(appended, e.fp.p)
			}
		}
	}
	s.mu.Unlock()
	if s.m.onAppend != nil {
		for _, p := range appended {
			s.m.onAppend(p)
		}
	}
	// A leader answers an empty long poll after max_wait; one that keeps
	// answering at once with nothing (and no error) is not long-polling, and
	// the source must not spin on it. A single early empty answer is fine.
	if got == 0 && !errored && time.Since(start) < cfg.MaxWait/2 {
		if s.fastEmpty++; s.fastEmpty >= fetcherFastEmptyLimit {
			return min(cfg.Backoff, cfg.MaxWait), nil
		}
	} else {
		s.fastEmpty = 0
	}
	return 0, nil
}

// PooledFetcher is a leader client that can decode a Fetch answer into a
// pooled buffer (wire.ReceivedFetch): the records are not copied out of the
// message, and the buffer is reused once they are appended. The broker's own
// connections implement it; a client that does not (a test's wrapper) is
// called through Fetch.
type PooledFetcher interface {
	FetchPooled(ctx context.Context, req *pb.FetchRequest, into *wire.ReceivedFetch, opts ...grpc.CallOption) error
}

// rpcFetch sends one fetch, on the source's FetchStream when the client and
// the leader have one, else as a unary Fetch; release gives the answer's
// memory back once the caller is done with its records.
func (s *fetcherSource) rpcFetch(ctx context.Context, req *pb.FetchRequest, opts ...grpc.CallOption) (*pb.FetchResponse, func(), error) {
	if sf, ok := s.client.(StreamFetcher); ok && (s.streamless.IsZero() || time.Now().After(s.streamless)) {
		resp, release, err := s.streamFetch(ctx, sf, req, opts...)
		if status.Code(err) != codes.Unimplemented {
			s.streamless = time.Time{}
			return resp, release, err
		}
		if s.streamless.IsZero() {
			s.logger.Info("leader does not serve FetchStream; fetching with unary Fetch", "leader", s.leaderID, "retry_after", s.m.cfg.StreamRetry)
		}
		s.streamless = time.Now().Add(s.m.cfg.StreamRetry)
	}
	pf, ok := s.client.(PooledFetcher)
	if !ok {
		resp, err := s.client.Fetch(ctx, req, opts...)
		return resp, func() {}, err
	}
	rf := &wire.ReceivedFetch{}
	if err := pf.FetchPooled(ctx, req, rf, opts...); err != nil {
		return nil, nil, err
	}
	return rf.Response(), rf.Release, nil
}

// applyLocked applies one partition's fetch result; it reports whether
// records were appended or the high watermark moved. Per error code:
//
//	NONE                  append the whole batches with the leader's HW
//	OFFSET_OUT_OF_RANGE   below the leader's log start: start the log over
//	                      at the leader's log start (the leader deleted what
//	                      we lack); else truncate by leader epoch again, and
//	                      if that was just done and did not help (the
//	                      leader's log ends before ours under epochs it does
//	                      not know), truncate to the leader's high watermark
//	FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER,
//	UNKNOWN_TOPIC_OR_PARTITION and any other error:
//	                      keep the partition and back off; the metadata
//	                      moves or removes it, and a new leader epoch in its
//	                      state makes it truncate again
//
// A diverging_epoch in the answer truncates to it (the leader's check of
// last_fetched_epoch) before the next fetch.
func (s *fetcherSource) applyLocked(e *fetcherEntry, r *pb.FetchPartitionResult) bool {
	fp, st, p := e.fp, e.st, e.fp.p
	switch code := r.GetErrorCode(); code {
	case pb.ErrorCode_NONE:
	case pb.ErrorCode_OFFSET_OUT_OF_RANGE:
		leaderStart := r.GetLogStartOffset()
		switch {
		case leaderStart >= 0 && e.offset < leaderStart:
			s.logger.Info("leader's log starts past this replica's end; starting over there",
				"topic", st.Topic, "partition", st.Index, "leo", e.offset, "leader_log_start", leaderStart)
			if err := p.Log().TruncateFullyAndStartAt(leaderStart); err != nil {
				s.delayLocked(fp, st, pb.ErrorCode_STORAGE_ERROR, err.Error())
			}
		case fp.truncated && r.GetHighWatermark() >= 0:
			s.logger.Warn("log ahead of the leader's after epoch truncation; truncating to the leader's high watermark",
				"topic", st.Topic, "partition", st.Index, "leo", e.offset, "leader_hw", r.GetHighWatermark())
			if _, err := p.Log().TruncateTo(r.GetHighWatermark()); err != nil {
				s.delayLocked(fp, st, pb.ErrorCode_STORAGE_ERROR, err.Error())
			} else {
				fp.delayUntil = time.Now().Add(s.m.cfg.Backoff)
			}
			fp.truncated = false
		default:
			fp.needTrunc = true
		}
		return false
	default:
		s.delayLocked(fp, st, code, r.GetErrorMessage())
		return false
	}
	fp.lastErr = pb.ErrorCode_NONE
	if de := r.GetDivergingEpoch(); de != nil && de.GetEndOffset() >= 0 {
		if _, err := p.TruncateForLeaderEpoch(de.GetEpoch(), de.GetEndOffset()); err != nil {
			s.delayLocked(fp, st, pb.ErrorCode_STORAGE_ERROR, err.Error())
		}
		return false
	}
	whole, err := fetcherWholeBatches(r.GetRecords(), e.offset)
	if err != nil {
		s.delayLocked(fp, st, pb.ErrorCode_CORRUPT_MESSAGE, err.Error())
		return false
	}
	if len(whole) > 0 {
		// The leader's log start may fall inside a batch (DeleteRecords): a
		// log that starts there, still empty, starts at the batch instead.
		if base := record.Batch(whole).BaseOffset(); base < e.offset {
			l := p.Log()
			if l.LogEndOffset() != l.LogStartOffset() {
				s.delayLocked(fp, st, pb.ErrorCode_CORRUPT_MESSAGE,
					fmt.Sprintf("batch at %d straddles the fetch offset %d", base, e.offset))
				fp.needTrunc = true
				return false
			}
			if err := l.TruncateFullyAndStartAt(base); err != nil {
				s.delayLocked(fp, st, pb.ErrorCode_STORAGE_ERROR, err.Error())
				return false
			}
		}
	}
	hw := r.GetHighWatermark()
	before := p.HighWatermark()
	if hw < 0 {
		hw = before
	}
	if _, err := p.AppendAsFollower(whole, hw); err != nil {
		code := pb.ErrorCode_STORAGE_ERROR
		switch {
		case errors.Is(err, ErrNotLeaderOrFollower):
			code = pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
		case errors.Is(err, storage.ErrOffsetOutOfRange):
			code = pb.ErrorCode_OFFSET_OUT_OF_RANGE
			fp.needTrunc = true
		case errors.Is(err, record.ErrCorruptRecord):
			code = pb.ErrorCode_CORRUPT_MESSAGE
		}
		s.delayLocked(fp, st, code, err.Error())
		return false
	}
	fp.truncated = false
	// Records the leader deleted (DeleteRecords, retention) go here too.
	if ls := r.GetLogStartOffset(); ls > p.Log().LogStartOffset() && ls <= p.Log().LogEndOffset() {
		if _, err := p.Log().DeleteRecordsBefore(ls); err != nil {
			s.logger.Warn("follow the leader's log start", "topic", st.Topic, "partition", st.Index, "err", err)
		}
	}
	return len(whole) > 0 || p.HighWatermark() != before
}

// fetcherWholeBatches returns the whole batches of data (a trailing partial
// batch is dropped), without those that end before offset.
func fetcherWholeBatches(data []byte, offset int64) ([]byte, error) {
	start, n := 0, 0
	for n < len(data) {
		b, err := record.Parse(data[n:])
		if errors.Is(err, record.ErrShortBatch) {
			break
		}
		if err != nil {
			return nil, err
		}
		if n == start && b.NextOffset() <= offset {
			start = n + len(b)
		}
		n += len(b)
	}
	return data[start:n], nil
}
