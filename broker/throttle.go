package broker

import (
	"strconv"
	"sync"
	"time"

	"github.com/stratalog/strata/raftfsm"
)

// ThrottleConfigKey is the dynamic broker config that caps, in bytes/s, the
// replication traffic this broker fetches for partitions being reassigned to
// it (Kafka's follower.replication.throttled.rate). Set for one broker
// (resource name: its id) or for all (resource name ""), it overrides
// Config.Fetcher.ThrottleBytesPerSec (`strata server --replication-throttle`)
// at once, without a restart; deleted, the static value applies again.
// `strata reassign execute --throttle` sets it on the brokers receiving
// replicas and `reassign verify` removes it once the reassignment is done.
const ThrottleConfigKey = "follower.replication.throttled.rate"

// applyThrottleConfig sets the fetchers' throttle from the image's broker
// configs (this broker's, else the cluster default, else the static one).
func (b *Broker) applyThrottleConfig(img *raftfsm.Image) {
	rate := b.cfg.Fetcher.ThrottleBytesPerSec
	v, ok := img.BrokerConfig(strconv.Itoa(int(b.cfg.NodeID)), ThrottleConfigKey)
	if !ok {
		v, ok = img.BrokerConfig("", ThrottleConfigKey)
	}
	if ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			b.log.Warn("broker: ignoring a bad "+ThrottleConfigKey, "value", v)
		} else {
			rate = n
		}
	}
	if rate != b.fetchers.Throttle() {
		b.log.Info("broker: replication throttle", "bytes_per_sec", rate)
		b.fetchers.SetThrottle(rate)
	}
}

// fetchThrottle is a token bucket in bytes for replication traffic that is
// throttled (reassignment): every fetcher source shares one, so the rate
// holds over all leaders together.
//
// A fetcher reserves up to a partition's max bytes before sending a fetch
// (reserve) and settles the reservation with the bytes that came back
// (settle): unused bytes go back, and bytes beyond the reservation (the
// leader answers a first batch whole even past the cap) are taken as debt,
// so the bucket goes negative and stays empty until the debt is repaid. Over
// any interval the bytes let through are at most rate*interval + burst + one
// batch per fetch in flight.
type fetchThrottle struct {
	rate  float64 // bytes per second
	burst float64 // the bucket's capacity
	now   func() time.Time

	mu struct {
		sync.Mutex
		tokens float64
		last   time.Time
	}
}

// newFetchThrottle returns a bucket for bytesPerSec (> 0) that starts full
// and holds burst's worth of traffic (at least one byte). The burst must
// cover a fetch round: while a throttled partition waits for tokens its
// source may sit in a long poll for its other partitions, and tokens beyond
// the capacity are lost, so a bucket smaller than a round's worth would
// hold the partition below its rate.
func newFetchThrottle(bytesPerSec int64, burst time.Duration, now func() time.Time) *fetchThrottle {
	if now == nil {
		now = time.Now
	}
	t := &fetchThrottle{rate: float64(bytesPerSec), burst: max(float64(bytesPerSec)*burst.Seconds(), 1), now: now}
	t.mu.tokens, t.mu.last = t.burst, now()
	return t
}

func (t *fetchThrottle) refillLocked() {
	now := t.now()
	if d := now.Sub(t.mu.last); d > 0 {
		t.mu.tokens = min(t.burst, t.mu.tokens+d.Seconds()*t.rate)
	}
	t.mu.last = now
}

// reserve takes up to want bytes from the bucket and returns how many it
// took: 0 when the bucket is empty (the partition is not fetched this round).
func (t *fetchThrottle) reserve(want int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refillLocked()
	got := min(int64(t.mu.tokens), want)
	if got <= 0 {
		return 0
	}
	t.mu.tokens -= float64(got)
	return got
}

// settle ends a reservation of reserved bytes of which used came back.
func (t *fetchThrottle) settle(reserved, used int64) {
	if reserved == used {
		return
	}
	t.mu.Lock()
	t.refillLocked()
	t.mu.tokens = min(t.burst, t.mu.tokens+float64(reserved-used))
	t.mu.Unlock()
}

// delay is how long until the bucket holds at least one byte again.
func (t *fetchThrottle) delay() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refillLocked()
	if t.mu.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - t.mu.tokens) / t.rate * float64(time.Second))
}

// ReplicationThrottle is the bytes/s cap now applied to this broker's
// throttled replication traffic (0: none).
func (b *Broker) ReplicationThrottle() int64 { return b.fetchers.Throttle() }
