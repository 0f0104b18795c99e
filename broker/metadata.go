package broker

import (
	"context"
	"net"
	"strconv"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
)

// followMetadata long-polls the controllers' metadata log and applies it
// with the same code the controllers run (raftfsm). Each new image is
// published and handed to the replica manager — but only once the broker
// has caught up with the log at least once, so a broker that restarts never
// acts on (and deletes logs because of) a stale, partial image.
func (b *Broker) followMetadata() {
	img := b.image.Load()
	caughtUpOnce := false
	var applied *raftfsm.Image
	backoff := 50 * time.Millisecond
	for b.ctx.Err() == nil {
		req := &pb.FetchMetadataRequest{
			BrokerId:    b.cfg.NodeID,
			BrokerEpoch: b.epoch.Load(),
			FromOffset:  img.Offset() + 1,
			MaxWaitMs:   int32(b.cfg.MetadataMaxWait / time.Millisecond),
		}
		var resp *pb.FetchMetadataResponse
		err := b.ctrl.call(b.ctx, true, func(ctx context.Context, c pb.ControllerServiceClient) error {
			cctx, cancel := context.WithTimeout(ctx, b.cfg.MetadataMaxWait+5*time.Second)
			defer cancel()
			var err error
			resp, err = c.FetchMetadata(cctx, req)
			return err
		})
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("broker: fetch metadata", "err", err)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		b.metrics.metadataHW.Store(resp.HighWaterOffset)
		next := img
		if resp.Snapshot != nil {
			if next, err = raftfsm.FromProto(resp.Snapshot); err != nil {
				b.log.Error("broker: metadata snapshot refused", "err", err)
				continue
			}
		}
		if len(resp.Entries) > 0 {
			var rerr error
			next, rerr = raftfsm.Replay(next, resp.Entries...)
			if rerr != nil {
				// A rejected batch is recorded in the image, as on the controllers.
				b.log.Warn("broker: metadata batch rejected", "err", rerr)
			}
		}
		img = next
		if !caughtUpOnce && img.Offset() >= resp.HighWaterOffset {
			caughtUpOnce = true
		}
		// Replicas first, then the image: whoever sees this broker named as
		// a leader in its Metadata finds the replica ready.
		if caughtUpOnce && applied != img {
			b.replicas.apply(img)
			b.groups.onImage(img)
			b.applyThrottleConfig(img)
			applied = img
		}
		if b.image.Load() != img {
			b.publishImage(img)
		}
	}
}

func splitHostPort(addr string) (string, int32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return "", 0, err
	}
	return host, int32(port), nil
}
