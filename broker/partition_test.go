package broker

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// replica is one broker's copy of the partition under test.
type replica struct {
	id  int32
	dir string
	p   *Partition
}

type cluster struct {
	t     *testing.T
	clk   *clock
	cfg   PartitionConfig
	reps  map[int32]*replica
	state PartitionState
}

func newCluster(t *testing.T, ids []int32, minISR int) *cluster {
	c := &cluster{t: t, clk: &clock{t: time.Unix(1_700_000_000, 0)}, reps: map[int32]*replica{},
		cfg: PartitionConfig{MinInsyncReplicas: minISR, ReplicaLagTimeMax: 10 * time.Second}}
	for _, id := range ids {
		r := &replica{id: id, dir: t.TempDir()}
		c.open(r)
		c.reps[id] = r
	}
	c.state = PartitionState{Topic: "t", Index: 0, Replicas: ids, ISR: slices.Clone(ids), Leader: ids[0], LeaderEpoch: 1, PartitionEpoch: 1}
	c.apply()
	return c
}

func (c *cluster) open(r *replica) {
	cfg := storage.DefaultConfig()
	cfg.RetentionMs = -1
	l, err := storage.Open(r.dir, cfg, storage.OpenOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { l.Close() })
	r.p = NewPartition(r.id, l, c.cfg, c.clk.now)
}

// apply pushes c.state to every live replica, as the metadata follower would.
func (c *cluster) apply() {
	for _, r := range c.reps {
		if r.p == nil {
			continue
		}
		var err error
		if r.id == c.state.Leader {
			_, err = r.p.MakeLeader(c.state)
		} else {
			_, err = r.p.MakeFollower(c.state)
		}
		if err != nil {
			c.t.Fatalf("apply state to %d: %v", r.id, err)
		}
	}
}

// elect makes id the leader with a new leader epoch and the given ISR.
func (c *cluster) elect(id int32, isr []int32) {
	c.state.Leader = id
	c.state.LeaderEpoch++
	c.state.PartitionEpoch++
	c.state.ISR = isr
	c.apply()
}

// commit applies an ISR proposal as the controller would.
func (c *cluster) commit(prop *ISRProposal) {
	if prop == nil {
		return
	}
	if prop.LeaderEpoch != c.state.LeaderEpoch || prop.PartitionEpoch != c.state.PartitionEpoch {
		c.t.Fatalf("proposal under stale epochs %d/%d, current %d/%d", prop.LeaderEpoch, prop.PartitionEpoch, c.state.LeaderEpoch, c.state.PartitionEpoch)
	}
	c.state.ISR = prop.NewISR
	c.state.PartitionEpoch++
	st := c.state
	leader := c.reps[c.state.Leader]
	if err := leader.p.ProposalDone(&st); err != nil {
		c.t.Fatal(err)
	}
	c.apply()
}

// produce appends n one-record batches "tag-i" on the leader.
func (c *cluster) produce(tag string, n int, acks int) (storage.AppendInfo, error) {
	b := record.NewBuilder(record.BatchOptions{})
	var last storage.AppendInfo
	for i := range n {
		b.Reset(record.BatchOptions{})
		b.Append(int64(i), nil, fmt.Appendf(nil, "%s-%d", tag, i), nil)
		out, _ := b.Build()
		info, err := c.reps[c.state.Leader].p.AppendAsLeader(bytes.Clone(out), acks)
		if err != nil {
			return info, err
		}
		last = info
	}
	return last, nil
}

// fetch runs one follower fetch round: the follower reads from its log end,
// the leader records it, the follower appends and takes the HW.
func (c *cluster) fetch(id int32) {
	c.t.Helper()
	f := c.reps[id]
	leader := c.reps[c.state.Leader].p
	off := f.p.Log().LogEndOffset()
	_, prop, err := leader.UpdateFollowerFetch(id, off, 1)
	if err != nil {
		c.t.Fatalf("fetch by %d: %v", id, err)
	}
	res, err := leader.ReadForFetch(off, 1<<20, c.state.LeaderEpoch, id)
	if err != nil {
		c.t.Fatalf("fetch by %d: %v", id, err)
	}
	data, err := res.Region.Bytes(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	// Whole batches only.
	n := 0
	for n < len(data) {
		b, err := record.Parse(data[n:])
		if err != nil {
			break
		}
		n += len(b)
	}
	if _, err := f.p.AppendAsFollower(data[:n], res.HighWatermark); err != nil {
		c.t.Fatalf("follower %d append: %v", id, err)
	}
	c.commit(prop)
}

// values reads every record value of a replica's log.
func values(t *testing.T, p *Partition) []string {
	t.Helper()
	var out []string
	var it record.Iterator
	l := p.Log()
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		r, err := l.Read(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := r.Bytes(nil)
		for len(data) > 0 {
			b, err := record.Parse(data)
			if err != nil {
				break
			}
			it.Reset(b)
			for it.Next() {
				out = append(out, string(it.Record().Value))
			}
			off = b.NextOffset()
			data = data[len(b):]
		}
	}
	return out
}

func TestHighWatermarkFollowsISR(t *testing.T) {
	c := newCluster(t, []int32{1, 2, 3}, 2)
	info, err := c.produce("a", 3, -1)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.reps[1].p
	if done, _ := leader.CheckAcksAll(info.LastOffset + 1); done || leader.HighWatermark() != 0 {
		t.Fatalf("HW %d before any follower fetched", leader.HighWatermark())
	}
	c.fetch(2)
	if leader.HighWatermark() != 0 {
		t.Fatalf("HW %d with follower 3 not yet fetched", leader.HighWatermark())
	}
	c.fetch(3)
	// Both followers have LEO 3 after their fetch; the leader learns it at their next fetch.
	c.fetch(2)
	c.fetch(3)
	if done, err := leader.CheckAcksAll(info.LastOffset + 1); !done || err != nil || leader.HighWatermark() != 3 {
		t.Fatalf("acks=all after replication: done=%v err=%v hw=%d", done, err, leader.HighWatermark())
	}
	// A follower learns the HW at its next fetch.
	c.fetch(2)
	if c.reps[2].p.HighWatermark() != 3 {
		t.Fatalf("follower HW %d, want 3", c.reps[2].p.HighWatermark())
	}
	// Consumers read only up to the HW.
	c.produce("b", 2, 1)
	res, err := leader.ReadForFetch(3, 1<<20, -1, -1)
	if err != nil || res.Region.Len != 0 {
		t.Fatalf("consumer read past the HW: %v, %d bytes", err, res.Region.Len)
	}
	res, err = leader.ReadForFetch(3, 1<<20, -1, 2)
	if err != nil || res.Region.Len == 0 {
		t.Fatalf("follower read up to the log end: %v, %d bytes", err, res.Region.Len)
	}
	// A waiting fetch completes when its read answers (an error, or bytes):
	// the consumer's not yet (between the HW and the log end), the
	// follower's now; errors and offsets out of range at once. A read with
	// nothing to answer does no I/O (Log.read returns before any segment).
	answersNow := func(p *Partition, offset int64, epoch, replica int32) bool {
		res, err := p.ReadForFetch(offset, 1<<20, epoch, replica)
		return err != nil || res.Region.Len > 0
	}
	for _, tc := range []struct {
		offset  int64
		epoch   int32
		replica int32
		want    bool
	}{
		{3, -1, -1, false}, {2, -1, -1, true}, {3, -1, 2, true}, {5, -1, 2, false},
		{6, -1, 2, true}, {5, c.state.LeaderEpoch + 1, 2, true}, {3, c.state.LeaderEpoch - 1, -1, true},
	} {
		if got := answersNow(leader, tc.offset, tc.epoch, tc.replica); got != tc.want {
			t.Errorf("fetch at offset %d, epoch %d, replica %d answers now: %v, want %v", tc.offset, tc.epoch, tc.replica, got, tc.want)
		}
	}
	if !answersNow(c.reps[2].p, 0, -1, -1) {
		t.Error("a fetch from a follower replica must answer (NOT_LEADER_OR_FOLLOWER) at once")
	}
}

func TestMinISRRefusesAndShrinkExpand(t *testing.T) {
	c := newCluster(t, []int32{1, 2, 3}, 2)
	leader := c.reps[1].p
	c.produce("a", 2, -1)
	c.fetch(2)
	c.fetch(3)
	// Follower 3 stops fetching; after replica.lag.time.max.ms it leaves the ISR.
	c.clk.advance(5 * time.Second)
	c.fetch(2)
	if prop := leader.MaybeShrinkISR(); prop != nil {
		t.Fatalf("shrink before the lag time: %v", prop.NewISR)
	}
	c.clk.advance(6 * time.Second)
	c.fetch(2)
	prop := leader.MaybeShrinkISR()
	if prop == nil || !slices.Equal(prop.NewISR, []int32{1, 2}) {
		t.Fatalf("shrink proposal %+v, want ISR [1 2]", prop)
	}
	c.commit(prop)
	// With ISR {1,2} and min ISR 2, acks=all still works.
	info, err := c.produce("b", 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	c.fetch(2)
	c.fetch(2)
	if done, err := leader.CheckAcksAll(info.LastOffset + 1); !done || err != nil {
		t.Fatalf("acks=all with ISR {1,2}: %v %v", done, err)
	}
	// Follower 2 falls behind too: the ISR becomes {1} and acks=all is refused, nothing appended.
	c.clk.advance(11 * time.Second)
	c.commit(leader.MaybeShrinkISR())
	if !slices.Equal(c.state.ISR, []int32{1}) {
		t.Fatalf("ISR %v, want [1]", c.state.ISR)
	}
	leo := leader.Log().LogEndOffset()
	if _, err := c.produce("c", 1, -1); !errors.Is(err, ErrNotEnoughReplicas) || !Retriable(err) {
		t.Fatalf("acks=all below min ISR: %v", err)
	}
	if leader.Log().LogEndOffset() != leo {
		t.Fatal("a refused acks=all produce appended records")
	}
	if _, err := c.produce("c", 1, 1); err != nil {
		t.Fatalf("acks=1 below min ISR: %v", err)
	}
	if _, err := c.produce("c", 1, 2); !errors.Is(err, ErrInvalidRequiredAcks) {
		t.Fatalf("acks=2: %v", err)
	}
	// Follower 3 resumes: it catches up and is proposed back into the ISR.
	c.fetch(3)
	c.fetch(3)
	if !slices.Contains(c.state.ISR, 3) {
		t.Fatalf("caught-up follower not back in the ISR: %v", c.state.ISR)
	}
	if got, want := values(t, c.reps[3].p), values(t, leader); !slices.Equal(got, want) {
		t.Fatalf("follower 3 diverges: %v vs %v", got, want)
	}
}

func TestLeaderEpochFencing(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	leader := c.reps[1].p
	if _, err := leader.ReadForFetch(0, 100, 0, -1); !errors.Is(err, ErrFencedLeaderEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	if _, err := leader.ReadForFetch(0, 100, 2, -1); !errors.Is(err, ErrUnknownLeaderEpoch) {
		t.Fatalf("future epoch: %v", err)
	}
	if _, err := c.reps[2].p.ReadForFetch(0, 100, -1, -1); !errors.Is(err, ErrNotLeaderOrFollower) {
		t.Fatalf("fetch from a follower: %v", err)
	}
	if _, err := c.reps[2].p.AppendAsLeader(nil, 1); !errors.Is(err, ErrNotLeaderOrFollower) {
		t.Fatalf("produce to a follower: %v", err)
	}
	stale := c.state
	stale.LeaderEpoch = 0
	if _, err := leader.MakeLeader(stale); !errors.Is(err, ErrStaleState) {
		t.Fatalf("stale state: %v", err)
	}
}

// TestLeaderEpochPreventsLoss is KIP-101's first scenario: the follower has
// a record the leader acknowledged but has not learned the HW for it; it
// restarts. Truncating to its HW would lose the record once it becomes
// leader; truncating by leader epoch keeps it.
func TestLeaderEpochPreventsLoss(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	info, err := c.produce("m", 2, -1)
	if err != nil {
		t.Fatal(err)
	}
	c.fetch(2) // the follower has both records
	c.fetch(2) // the leader learns its LEO: HW 2, acknowledged
	if done, _ := c.reps[1].p.CheckAcksAll(info.LastOffset + 1); !done {
		t.Fatal("records not committed")
	}
	// Make the follower's HW lag on purpose: it restarts with HW 0.
	f := c.reps[2]
	f.p.Log().SetHighWatermark(0)
	f.p.Log().Close()
	c.open(f)
	c.apply()
	// On restart it asks the leader for the end of its latest epoch and truncates there.
	e, end, err := c.reps[1].p.OffsetForLeaderEpoch(-1, f.p.LatestEpoch())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.TruncateForLeaderEpoch(e, end); err != nil {
		t.Fatal(err)
	}
	if f.p.Log().LogEndOffset() != 2 {
		t.Fatalf("follower truncated to %d; the acknowledged records are gone", f.p.Log().LogEndOffset())
	}
	// The leader dies; the follower takes over and has both records.
	c.reps[1].p.Log().Close()
	c.reps[1].p = nil
	c.elect(2, []int32{2})
	if got := values(t, f.p); !slices.Equal(got, []string{"m-0", "m-1"}) {
		t.Fatalf("new leader has %v", got)
	}
}

// TestLeaderEpochPreventsDivergence is KIP-101's second scenario: both
// replicas crash; the one that comes back first leads a new epoch and writes
// a different record at an offset the other also has. The returning replica
// truncates to where the epochs agree and then fetches, so no replica
// diverges.
func TestLeaderEpochPreventsDivergence(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	c.produce("m", 1, 1)
	c.fetch(2) // both have m-0
	// Replica 1 (leader) writes m-1 that never reaches 2, then both crash.
	c.produce("old", 1, 1)
	old := c.reps[1]
	old.p.Log().Close()
	old.p = nil
	// 2 comes back first and leads epoch 2; it writes new-0 at offset 1.
	c.elect(2, []int32{2})
	c.produce("new", 1, 1)
	// 1 returns as a follower: truncation by epoch drops its old-0 at offset 1.
	c.open(old)
	c.apply()
	e, end, err := c.reps[2].p.OffsetForLeaderEpoch(-1, old.p.LatestEpoch())
	if err != nil {
		t.Fatal(err)
	}
	if e != 1 || end != 1 {
		t.Fatalf("leader says epoch %d ended at %d, want epoch 1 ending at 1", e, end)
	}
	if leo, err := old.p.TruncateForLeaderEpoch(e, end); err != nil || leo != 1 {
		t.Fatalf("truncate: %d, %v", leo, err)
	}
	c.fetch(1)
	if got, want := values(t, old.p), values(t, c.reps[2].p); !slices.Equal(got, want) || !slices.Equal(got, []string{"m-0", "new-0"}) {
		t.Fatalf("replicas diverge: %v vs %v", got, want)
	}
}

// TestReappliedStateKeepsISRExpansionInFlight: the metadata follower
// re-applies every partition's state on every new image, unchanged ones
// included. While an ISR expansion is in flight, such a re-apply must not
// drop it: the controller may commit the new member, and a HW computed
// without it would acknowledge records the new member lacks — which are
// lost if it is then elected (found by the fault suite: a reassignment
// whose new replica became leader truncated acknowledged records).
// TestLeaderFsyncOverlapsFollowerFetch: with flush.messages=1 a leader
// append makes its records readable and calls published before its fsync,
// with the partition unlocked, so followers fetch (and the leader records
// their fetch) while it runs; the append returns once the fsync is done.
func TestLeaderFsyncOverlapsFollowerFetch(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	leader := c.reps[1].p
	cfg := leader.Log().Config()
	cfg.FlushMessages = 1
	if err := leader.Log().SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	var sawUnflushed bool
	leader.published = func() {
		l := leader.Log()
		sawUnflushed = l.RecoveryPoint() < l.LogEndOffset()
		c.fetch(2) // takes the partition's write lock: a held read lock would deadlock here
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.produce("a", 1, -1)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append blocked: published ran with the partition locked")
	}
	if !sawUnflushed {
		t.Fatal("published ran after the fsync")
	}
	if l := leader.Log(); l.RecoveryPoint() != l.LogEndOffset() {
		t.Fatalf("append returned before its fsync: recovery point %d, log end %d", l.RecoveryPoint(), l.LogEndOffset())
	}
	if c.reps[2].p.Log().LogEndOffset() != 1 {
		t.Fatal("the follower did not fetch the record during the leader's fsync")
	}
}

// TestLeaderAppendWakesReaders: every leader append calls published — the
// group coordinator's (AppendAsLeaderInEpoch) as much as a produce
// request's, with no fsync due — and alone in the ISR only once the high
// watermark covers the records. (The coordinator's appends woke nobody
// before: followers of __consumer_offsets saw them at their next long poll's
// timeout, and an acks=all commit waited that long.)
func TestLeaderAppendWakesReaders(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	leader := c.reps[1].p
	calls := 0
	leader.published = func() { calls++ }
	b := record.NewBuilder(record.BatchOptions{})
	b.Append(1, nil, []byte("offsets"), nil)
	out, _ := b.Build()
	if _, err := leader.AppendAsLeaderInEpoch(bytes.Clone(out), -1, c.state.LeaderEpoch); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("published called %d times for one append, want 1", calls)
	}

	alone := newCluster(t, []int32{1}, 1)
	solo := alone.reps[1].p
	var hwAtWake int64 = -1
	solo.published = func() { hwAtWake = solo.HighWatermark() }
	if _, err := alone.produce("a", 1, 1); err != nil {
		t.Fatal(err)
	}
	if hwAtWake != 1 {
		t.Fatalf("alone in the ISR, published ran with the HW at %d, want 1 (after it moved)", hwAtWake)
	}
}

func TestReappliedStateKeepsISRExpansionInFlight(t *testing.T) {
	c := newCluster(t, []int32{1, 2, 3}, 2)
	// Broker 3 falls out of the ISR, then catches up to the HW.
	c.state.ISR = []int32{1, 2}
	c.state.PartitionEpoch++
	c.apply()
	if _, err := c.produce("a", 5, 1); err != nil {
		t.Fatal(err)
	}
	c.fetch(2)
	c.fetch(2) // HW = 5
	leader := c.reps[1].p
	off := c.reps[3].p.Log().LogEndOffset() // 0: behind
	// Catch 3 up by hand, keeping its proposal uncommitted.
	res, err := leader.ReadForFetch(off, 1<<20, c.state.LeaderEpoch, 3)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := res.Region.Bytes(nil)
	if _, err := c.reps[3].p.AppendAsFollower(data, res.HighWatermark); err != nil {
		t.Fatal(err)
	}
	_, prop, err := leader.UpdateFollowerFetch(3, c.reps[3].p.Log().LogEndOffset(), 1)
	if err != nil || prop == nil {
		t.Fatalf("no ISR expansion proposed: %v %v", prop, err)
	}
	// More records, replicated to 2 only; an unrelated image re-applies
	// the unchanged state to the leader.
	if _, err := c.produce("b", 3, -1); err != nil {
		t.Fatal(err)
	}
	c.apply()
	c.fetch(2)
	c.fetch(2)
	if hw, leo3 := leader.HighWatermark(), c.reps[3].p.Log().LogEndOffset(); hw > leo3 {
		t.Fatalf("HW %d passed the log end %d of broker 3, whose ISR expansion is in flight", hw, leo3)
	}
	c.commit(prop) // the controller takes 3 into the ISR
	c.fetch(3)
	c.fetch(3) // reports the log end the previous fetch brought
	c.fetch(2)
	if hw := leader.HighWatermark(); hw != 8 {
		t.Fatalf("HW %d after 3 caught up, want 8", hw)
	}
}

// TestDecodeRecordsStopsAtLimit: a consumer's decoded answer ends at the
// high watermark it reports, and the next fetch starts there — a batch read
// past the HW (the HW moved while the region was read) is fetched again,
// not skipped. (Subscribe lost such records before.)
func TestDecodeRecordsStopsAtLimit(t *testing.T) {
	var buf []byte
	for i, vals := range [][]string{{"a", "b"}, {"c", "d", "e"}, {"f"}} {
		bl := record.NewBuilder(record.BatchOptions{})
		for _, v := range vals {
			if err := bl.Append(1, nil, []byte(v), nil); err != nil {
				t.Fatal(err)
			}
		}
		b, err := bl.Build()
		if err != nil {
			t.Fatal(err)
		}
		b = append(record.Batch(nil), b...)
		b.SetBaseOffset([]int64{0, 2, 5}[i])
		buf = append(buf, b...)
	}
	for _, c := range []struct {
		from, limit int64
		want        string
		next        int64
	}{
		{0, 6, "abcdef", 6},
		{0, 2, "ab", 2},   // the next batch starts at the limit
		{0, 4, "abcd", 4}, // the limit falls inside a batch
		{3, 4, "d", 4},
		{1, 0, "", 1}, // nothing below the limit
	} {
		recs, next, err := decodeRecords(buf, c.from, true, c.limit)
		got := ""
		for _, r := range recs {
			got += string(r.Value)
		}
		if err != nil || got != c.want || next != c.next {
			t.Errorf("from %d limit %d: %q next %d err %v, want %q next %d", c.from, c.limit, got, next, err, c.want, c.next)
		}
	}
	// A follower (not a consumer) gets everything.
	if recs, next, err := decodeRecords(buf, 0, false, 2); err != nil || len(recs) != 6 || next != 6 {
		t.Errorf("replica: %d records next %d err %v", len(recs), next, err)
	}
}

// A waiting consumer fetch below the HW is not answered when compaction left
// no batch between its offset and the HW: the offsets say "maybe", the read
// finds nothing, and the fetch keeps waiting (an empty answer at once would
// make the consumer, or a Subscribe, fetch again in a tight loop).
func TestDelayedFetchWaitsOverCompactedGap(t *testing.T) {
	c := newCluster(t, []int32{1, 2}, 1)
	leader := c.reps[1].p
	cfg := storage.DefaultConfig()
	cfg.RetentionMs, cfg.Compact, cfg.SegmentBytes = -1, true, 1024
	if err := leader.Log().SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	keyed := func(n int) {
		b := record.NewBuilder(record.BatchOptions{})
		for i := range n {
			b.Reset(record.BatchOptions{})
			b.Append(int64(i), []byte("k"), fmt.Appendf(nil, "v-%d", i), nil)
			out, _ := b.Build()
			if _, err := leader.AppendAsLeader(bytes.Clone(out), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	keyed(2)
	c.fetch(2)
	c.fetch(2)
	if leader.HighWatermark() != 2 {
		t.Fatalf("HW %d, want 2", leader.HighWatermark())
	}
	keyed(60) // follower 2 does not fetch: the HW stays at 2
	if _, err := leader.Log().Compact(); err != nil {
		t.Fatal(err)
	}
	res, err := leader.ReadForFetch(0, 1<<20, -1, -1)
	if err != nil || res.Region.Len != 0 || leader.HighWatermark() <= 0 {
		t.Fatalf("set-up: compaction left bytes below the HW %d (%v, %d bytes): no gap to test", leader.HighWatermark(), err, res.Region.Len)
	}
	rm := newReplicaManager(nil)
	rm.mu.parts[storage.TopicPartition{Topic: "t", Partition: 0}] = leader
	svc := &service{b: &Broker{replicas: rm}}
	d := &delayedFetch{s: svc, minBytes: 1, done: make(chan struct{}), req: &pb.FetchRequest{ReplicaId: -1, Topics: []*pb.FetchTopic{{
		Topic: "t", Partitions: []*pb.FetchPartition{{Partition: 0, FetchOffset: 0, CurrentLeaderEpoch: -1}}}}}}
	if d.TryComplete() {
		t.Fatal("a consumer fetch with nothing readable below the HW completed")
	}
}
