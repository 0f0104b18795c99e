package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Server assignors a group can ask for (GroupConsumerConfig.Assignor).
const (
	// AssignorUniform keeps partitions where they are and balances the
	// counts (the coordinator's default).
	AssignorUniform = "uniform"
	// AssignorRange gives each member a contiguous range of each topic's
	// partitions.
	AssignorRange = "range"
)

// GroupConsumerConfig configures a GroupConsumer. Group and one of Topics or
// TopicRegex are required; zero values of the rest take Kafka's defaults.
type GroupConsumerConfig struct {
	// Group is the consumer group (group.id).
	Group string
	// Topics to subscribe to, or TopicRegex: a regular expression (RE2,
	// anchored at both ends) over topic names, evaluated by the coordinator
	// so that topics created later join the subscription. One or the other.
	Topics     []string
	TopicRegex string
	// InstanceID makes the member static (group.instance.id): after Close it
	// keeps its partitions reserved for the coordinator's session timeout,
	// and a new GroupConsumer with the same InstanceID takes them back
	// without a rebalance.
	InstanceID string
	// ClientID and Rack are reported to the coordinator (describe shows them).
	ClientID string
	Rack     string
	// Assignor is the server assignor the group uses: AssignorUniform or
	// AssignorRange; "" lets the coordinator choose (uniform).
	Assignor string
	// RebalanceTimeout bounds how long the member may keep partitions it must
	// give up (OnRevoked included); 0: the coordinator's default. It also
	// bounds the context the callbacks get (default 60 s).
	RebalanceTimeout time.Duration
	// MaxPollInterval (max.poll.interval.ms, default 5 min): when the
	// application has not called Poll for this long, the member leaves the
	// group (committing what it processed, OnRevoked) so that its partitions
	// go to members that make progress; the next Poll joins again.
	MaxPollInterval time.Duration
	// DisableAutoCommit turns auto-commit (enable.auto.commit, on by
	// default) off: then only CommitSync, CommitAsync and Commit commit.
	DisableAutoCommit bool
	// AutoCommitInterval is how often auto-commit commits (default 5 s).
	AutoCommitInterval time.Duration
	// OnAssigned is called with the partitions the coordinator gave the
	// member, after their committed offsets were looked up and before Poll
	// returns any of their records.
	OnAssigned func(ctx context.Context, partitions []TopicPartition)
	// OnRevoked is called with partitions the member gives up (a rebalance,
	// or Close): fetching them has stopped and, with auto-commit, their
	// positions are committed; the coordinator hands them on only once this
	// returns, so a commit made here (Commit, CommitSync) still counts.
	OnRevoked func(ctx context.Context, partitions []TopicPartition)
	// OnLost is called with partitions the member lost without giving them
	// up (it was fenced: a session timeout, a missed epoch). Another member
	// may own them already, so nothing is committed for them.
	OnLost func(ctx context.Context, partitions []TopicPartition)
	// Consumer configures the fetching: sizes, waits, and AutoOffsetReset
	// (where a partition without a committed offset starts: latest by
	// default, earliest, or none: Poll returns OFFSET_OUT_OF_RANGE).
	Consumer ConsumerConfig
}

func (c GroupConsumerConfig) validate() (GroupConsumerConfig, error) {
	bad := func(format string, args ...any) (GroupConsumerConfig, error) {
		return c, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf(format, args...)}
	}
	if c.Group == "" {
		return c, &Error{Code: pb.ErrorCode_INVALID_GROUP_ID, Message: "GroupConsumerConfig.Group is empty: name the consumer group"}
	}
	switch {
	case len(c.Topics) == 0 && c.TopicRegex == "":
		return bad("subscribe to something: set GroupConsumerConfig.Topics or TopicRegex")
	case len(c.Topics) > 0 && c.TopicRegex != "":
		return bad("GroupConsumerConfig.Topics and TopicRegex exclude each other: set one")
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if t == "" || seen[t] {
			return bad("GroupConsumerConfig.Topics %q: every topic once, none empty", c.Topics)
		}
		seen[t] = true
	}
	if c.TopicRegex != "" {
		if _, err := regexp.Compile("^(?:" + c.TopicRegex + ")$"); err != nil {
			return c, &Error{Code: pb.ErrorCode_INVALID_REGULAR_EXPRESSION, Message: fmt.Sprintf("TopicRegex %q: %v", c.TopicRegex, err)}
		}
	}
	switch c.Assignor {
	case "", AssignorUniform, AssignorRange:
	default:
		return c, &Error{Code: pb.ErrorCode_UNSUPPORTED_ASSIGNOR, Message: fmt.Sprintf("Assignor %q: want %s or %s", c.Assignor, AssignorUniform, AssignorRange)}
	}
	if c.RebalanceTimeout < 0 || c.AutoCommitInterval < 0 || c.MaxPollInterval < 0 {
		return bad("negative RebalanceTimeout, AutoCommitInterval or MaxPollInterval")
	}
	if c.MaxPollInterval == 0 {
		c.MaxPollInterval = 5 * time.Minute
	}
	if c.AutoCommitInterval == 0 {
		c.AutoCommitInterval = 5 * time.Second
	}
	if c.ClientID == "" {
		c.ClientID = "strata-go"
	}
	c.Topics = append([]string(nil), c.Topics...)
	return c, nil
}

// GroupConsumer is a member of a consumer group (Kafka's KafkaConsumer with
// subscribe): the group's coordinator assigns it partitions of the
// subscribed topics, each partition to one member of the group at a time,
// and it reads them from the group's committed offsets on.
//
// It speaks the KIP-848 protocol: a goroutine heartbeats to the
// coordinator, always reporting the partitions the member owns; when the
// answer assigns fewer, the member stops fetching those, commits their
// positions (with auto-commit), calls OnRevoked and heartbeats at once
// without them, so the coordinator can hand them on; when it assigns more,
// it looks up their committed offsets, calls OnAssigned and starts fetching
// them. A fenced member (UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH) loses its
// partitions (OnLost, nothing committed) and joins again; a coordinator
// that moved is found again.
//
// Committing: Poll returns records; the position after the last record Poll
// returned for a partition is what CommitSync, CommitAsync and Close commit.
// Auto-commit (every AutoCommitInterval, and before partitions are given
// up) commits only what Polls before the latest one returned: a record
// counts as processed once the application comes back to Poll for more, so
// a crash while processing a batch reads that batch again (at least once).
//
// The callbacks run on the heartbeat goroutine, one at a time; heartbeats
// wait for them, so keep them well under the session timeout. Do not call
// Close from a callback. Poll, commits and the accessors are safe for
// concurrent use, but records come in order only to one goroutine calling
// Poll at a time. The GroupConsumer borrows the Client.
type GroupConsumer struct {
	cl     *Client
	cfg    GroupConsumerConfig
	cons   *Consumer
	router *groupRouter
	log    *slog.Logger

	hbMu sync.Mutex // one heartbeat at a time: the coordinator sees owned lists in order

	mu struct {
		sync.Mutex
		memberID string
		epoch    int32 // 0: joining (again)
		interval time.Duration
		target   map[TopicPartition]bool // the last assignment answered; nil before the first
		lost     bool                    // fenced: drop every partition before joining again

		owned  map[TopicPartition]bool // reported in heartbeats
		active map[TopicPartition]bool // fetched, and returned by Poll
		// returned: the position after the last record Poll returned;
		// processed: the same as of the start of the latest Poll.
		returned  map[TopicPartition]offsetEpoch
		processed map[TopicPartition]offsetEpoch
		committed map[TopicPartition]int64 // the last offsets committed

		// Assignment changes wait until no Poll is inside the Consumer, and
		// Polls wait while a change is under way (cond).
		changing int
		polling  map[*pollCall]bool
		// lastPoll: when a Poll last started or ended; inPoll: Polls running.
		// idle: the member left for want of Polls (MaxPollInterval).
		lastPoll time.Time
		inPoll   int
		idle     bool
		closed   bool
		closeErr error // what Close's commit and leave failed with
		err      error // fatal: the group refused the member for good
	}
	cond *sync.Cond // on mu

	wake     chan struct{} // heartbeat now
	closing  chan struct{} // closed by Close: leave the group
	done     chan struct{} // the heartbeat goroutine ended
	stop     context.Context
	stopWith context.CancelCauseFunc // ends Polls: Close or a fatal error
	async    asyncCommits
}

// offsetEpoch is a position and the leader epoch of the record before it.
type offsetEpoch struct {
	offset int64
	epoch  int32
}

// pollCall is one Poll inside the Consumer; a change interrupts it.
type pollCall struct{ cancel context.CancelCauseFunc }

// errRebalance interrupts a Poll for an assignment change; Poll goes on.
var errRebalance = errors.New("client: assignment changing")

// NewGroupConsumer returns a member of cfg.Group over cl and starts joining
// the group in the background; Poll returns records once partitions are
// assigned. Close it when done (it leaves the group at once).
func NewGroupConsumer(cl *Client, cfg GroupConsumerConfig) (*GroupConsumer, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cons, err := NewConsumer(cl, cfg.Consumer)
	if err != nil {
		return nil, err
	}
	g := &GroupConsumer{cl: cl, cfg: cfg, cons: cons, router: &groupRouter{cl: cl, group: cfg.Group},
		log: cl.cfg.Logger.With("group", cfg.Group), wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	g.mu.interval = 3 * time.Second
	g.mu.owned = map[TopicPartition]bool{}
	g.mu.active = map[TopicPartition]bool{}
	g.mu.returned = map[TopicPartition]offsetEpoch{}
	g.mu.processed = map[TopicPartition]offsetEpoch{}
	g.mu.committed = map[TopicPartition]int64{}
	g.mu.polling = map[*pollCall]bool{}
	g.mu.lastPoll = time.Now()
	g.stop, g.stopWith = context.WithCancelCause(context.Background())
	g.async.init(g)
	go g.run()
	return g, nil
}

// MemberID is the member id the coordinator gave ("" before the first
// answer).
func (g *GroupConsumer) MemberID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.memberID
}

// MemberEpoch is the member's epoch (0 while joining).
func (g *GroupConsumer) MemberEpoch() int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.epoch
}

// Assignment lists the partitions the member owns, sorted.
func (g *GroupConsumer) Assignment() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedParts(g.mu.owned)
}

func sortedParts(m map[TopicPartition]bool) []TopicPartition {
	out := make([]TopicPartition, 0, len(m))
	for tp := range m {
		out = append(out, tp)
	}
	sortTopicPartitions(out, func(tp TopicPartition) TopicPartition { return tp })
	return out
}

// Poll returns the next records of the member's partitions: at least one,
// in offset order per partition. It waits until records arrive or ctx ends
// (then it returns ctx's error); while the member has no partitions it just
// waits. Calling Poll marks the records the previous Poll returned as
// processed (auto-commit commits up to them), and tells the group the
// application is alive (see MaxPollInterval). After Close it returns
// ErrConsumerClosed; when the group refuses the member for good
// (INVALID_GROUP_ID, GROUP_MAX_SIZE_REACHED, ...) it returns that error.
func (g *GroupConsumer) Poll(ctx context.Context) ([]Record, error) {
	g.mu.Lock()
	if err := g.stoppedLocked(); err != nil {
		g.mu.Unlock()
		return nil, err
	}
	for tp, oe := range g.mu.returned {
		g.mu.processed[tp] = oe
	}
	g.mu.inPoll++
	g.mu.lastPoll = time.Now()
	if g.mu.idle {
		g.mu.idle = false
		g.kick() // join again
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.mu.inPoll--
		g.mu.lastPoll = time.Now()
		g.mu.Unlock()
	}()
	for {
		g.mu.Lock()
		for g.mu.changing > 0 {
			g.cond.Wait()
		}
		if err := g.stoppedLocked(); err != nil {
			g.mu.Unlock()
			return nil, err
		}
		pctx, cancel := context.WithCancelCause(ctx)
		call := &pollCall{cancel: cancel}
		g.mu.polling[call] = true
		g.mu.Unlock()
		stop := context.AfterFunc(g.stop, func() { cancel(context.Cause(g.stop)) })

		recs, err := g.cons.Poll(pctx)

		stop()
		g.mu.Lock()
		delete(g.mu.polling, call)
		g.cond.Broadcast()
		out := recs[:0]
		for _, r := range recs {
			tp := TopicPartition{r.Topic, r.Partition}
			if !g.mu.active[tp] {
				continue // given up meanwhile (cannot happen: changes wait for Polls)
			}
			out = append(out, r)
			g.mu.returned[tp] = offsetEpoch{r.Offset + 1, r.LeaderEpoch}
		}
		g.mu.Unlock()
		cause := context.Cause(pctx)
		cancel(nil)
		if len(out) > 0 {
			return out, nil
		}
		if err == nil {
			continue
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(cause, errRebalance):
			continue
		case g.stop.Err() != nil:
			return nil, context.Cause(g.stop)
		}
		return nil, err
	}
}

// stoppedLocked is the error Poll returns once the consumer is closed or
// refused for good, nil before.
func (g *GroupConsumer) stoppedLocked() error {
	if g.mu.err != nil {
		return g.mu.err
	}
	if g.mu.closed {
		return ErrConsumerClosed
	}
	return nil
}

// change runs fn under the lock once no Poll is inside the Consumer
// (running Polls are interrupted and go on after), so that a Poll never
// returns records of a partition the member gave up before it returned.
func (g *GroupConsumer) change(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.changing++
	for call := range g.mu.polling {
		call.cancel(errRebalance)
	}
	for len(g.mu.polling) > 0 {
		g.cond.Wait()
	}
	fn()
	g.mu.changing--
	g.cond.Broadcast()
}

// setFetchingLocked makes the Consumer fetch exactly the active partitions,
// starting new ones at positions (others per AutoOffsetReset), and wakes a
// waiting Poll.
func (g *GroupConsumer) setFetchingLocked(positions map[TopicPartition]int64) {
	tps := make([]TopicPartition, 0, len(g.mu.active))
	for tp := range g.mu.active {
		tps = append(tps, tp)
	}
	if err := g.cons.assign(tps, positions); err != nil && !errors.Is(err, ErrConsumerClosed) {
		g.log.Warn("assigning partitions to the consumer", "err", err)
	}
	g.cons.signal()
}

// Close leaves the group at once: it stops fetching, commits what Poll
// returned (with auto-commit), calls OnRevoked with the member's partitions,
// and sends the leave heartbeat (member epoch -1, or -2 with an InstanceID:
// the partitions stay reserved for its return). Pending CommitAsync calls
// complete first. It takes at most about the Client's RequestTimeout and
// returns what failed (the member has left either way, or will be timed
// out by the coordinator). Calling it again returns nil.
func (g *GroupConsumer) Close() error {
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		return nil
	}
	g.mu.closed = true
	g.mu.Unlock()
	g.stopWith(ErrConsumerClosed)
	g.async.drain()
	close(g.closing)
	<-g.done
	g.mu.Lock()
	err := g.mu.closeErr
	g.mu.Unlock()
	return errors.Join(err, g.cons.Close())
}

// ownedLocked lists the owned partitions in the protocol's shape.
func (g *GroupConsumer) ownedLocked() []*pb.TopicPartitions {
	return groupByTopic(sortedParts(g.mu.owned))
}

// partsOf turns the protocol's per-topic lists into a set.
func partsOf(tps []*pb.TopicPartitions) map[TopicPartition]bool {
	out := map[TopicPartition]bool{}
	for _, t := range tps {
		for _, p := range t.Partitions {
			out[TopicPartition{t.Topic, p}] = true
		}
	}
	return out
}

// minus is a - b, sorted.
func minus(a, b map[TopicPartition]bool) []TopicPartition {
	var out []TopicPartition
	for tp := range a {
		if !b[tp] {
			out = append(out, tp)
		}
	}
	sortTopicPartitions(out, func(tp TopicPartition) TopicPartition { return tp })
	return out
}
