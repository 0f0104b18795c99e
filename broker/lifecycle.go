package broker

import (
	"context"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// register obtains a broker epoch from the active controller, retrying until
// ctx ends.
func (b *Broker) register(ctx context.Context) error {
	host, port, err := splitHostPort(b.addr)
	if err != nil {
		return err
	}
	req := &pb.RegisterBrokerRequest{
		BrokerId:            b.cfg.NodeID,
		IncarnationId:       b.incarnation,
		Listeners:           []*pb.Listener{{Name: ListenerName, Host: host, Port: port}},
		Rack:                b.cfg.Rack,
		PreviousBrokerEpoch: -1,
	}
	var resp *pb.RegisterBrokerResponse
	for {
		err = b.ctrl.call(ctx, false, func(ctx context.Context, c pb.ControllerServiceClient) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var err error
			resp, err = c.RegisterBroker(cctx, req)
			return err
		})
		// After a crash the previous process's session lives on until it
		// times out: wait for it.
		if info := errorInfo(err); info != nil && info.Code == pb.ErrorCode_DUPLICATE_BROKER_REGISTRATION && ctx.Err() == nil {
			b.log.Info("broker: waiting for the previous session of this broker id to expire", "msg", info.Message)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		break
	}
	if err != nil {
		return err
	}
	b.epoch.Store(resp.BrokerEpoch)
	b.fenced.Store(true) // until a heartbeat says otherwise
	return nil
}

// heartbeatLoop renews the broker's session and reports its metadata offset;
// it carries the controlled-shutdown request and learns when to exit.
func (b *Broker) heartbeatLoop() {
	interval := time.Second
	for {
		req := &pb.BrokerHeartbeatRequest{
			BrokerId:              b.cfg.NodeID,
			BrokerEpoch:           b.epoch.Load(),
			CurrentMetadataOffset: b.image.Load().Offset(),
			WantShutdown:          b.wantShutdown.Load(),
		}
		var resp *pb.BrokerHeartbeatResponse
		err := b.ctrl.call(b.ctx, false, func(ctx context.Context, c pb.ControllerServiceClient) error {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var err error
			resp, err = c.BrokerHeartbeat(cctx, req)
			return err
		})
		switch {
		case b.ctx.Err() != nil:
			return
		case err != nil:
			b.log.Warn("broker: heartbeat", "err", err)
		default:
			b.heartbeatOK.Store(time.Now().UnixNano())
			b.fenced.Store(resp.IsFenced)
			b.caughtUp.Store(resp.IsCaughtUp)
			if resp.HeartbeatIntervalMs > 0 {
				interval = time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
			}
			// The controller asks for heartbeats every quarter session.
			b.sessionEst.Store(int64(4 * interval))
			if resp.ShouldShutDown && b.wantShutdown.Load() {
				select {
				case <-b.shutdownGranted:
				default:
					close(b.shutdownGranted)
				}
			}
		}
		wait := interval
		var newImage <-chan struct{}
		if b.wantShutdown.Load() || b.fenced.Load() {
			// A new image may complete the controlled shutdown or unfence
			// us: report it at once.
			wait = min(interval, 100*time.Millisecond)
			newImage = b.waitImage()
		}
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(wait):
		case <-newImage:
		}
	}
}
