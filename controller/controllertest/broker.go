package controllertest

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// FakeBroker registers with the cluster and heartbeats like a broker, with
// the metadata offset it learns from FetchMetadata. Tests stop its
// heartbeats to make its session expire.
type FakeBroker struct {
	ID          int32
	Rack        string
	Incarnation []byte
	c           *Cluster

	mu struct {
		sync.Mutex
		epoch    int64
		offset   int64
		last     *pb.BrokerHeartbeatResponse
		shutdown bool
	}
	stop chan struct{}
	done chan struct{}
}

// NewFakeBroker makes a broker with a fresh incarnation; it does nothing
// until Register.
func (c *Cluster) NewFakeBroker(id int32, rack string) *FakeBroker {
	inc := make([]byte, 16)
	_, _ = rand.Read(inc)
	inc[0] |= 1
	return &FakeBroker{ID: id, Rack: rack, Incarnation: inc, c: c}
}

// Register registers the broker and returns its epoch.
func (b *FakeBroker) Register(ctx context.Context) (int64, error) {
	var resp *pb.RegisterBrokerResponse
	err := b.c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		resp, err = cl.RegisterBroker(ctx, &pb.RegisterBrokerRequest{
			BrokerId: b.ID, IncarnationId: b.Incarnation, Rack: b.Rack, PreviousBrokerEpoch: -1,
			Listeners: []*pb.Listener{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9000 + b.ID}},
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.mu.epoch = resp.GetBrokerEpoch()
	b.mu.Unlock()
	return resp.GetBrokerEpoch(), nil
}

// Epoch is the broker's current epoch.
func (b *FakeBroker) Epoch() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.epoch
}

// Heartbeat catches up with the metadata log (FetchMetadata) and sends one
// heartbeat.
func (b *FakeBroker) Heartbeat(ctx context.Context, wantShutdown bool) (*pb.BrokerHeartbeatResponse, error) {
	b.mu.Lock()
	epoch, off := b.mu.epoch, b.mu.offset
	b.mu.Unlock()
	for { // catch up
		var fr *pb.FetchMetadataResponse
		err := b.c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			var err error
			fr, err = cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{BrokerId: b.ID, BrokerEpoch: epoch, FromOffset: off + 1})
			return err
		})
		if err != nil {
			return nil, err
		}
		if s := fr.GetSnapshot(); s != nil {
			off = s.GetOffset()
		}
		if n := len(fr.GetEntries()); n > 0 {
			off = fr.GetEntries()[n-1].GetOffset()
		}
		if n := len(fr.GetEntries()); n == 0 || off >= fr.GetHighWaterOffset() {
			off = max(off, fr.GetHighWaterOffset())
			break
		}
	}
	var resp *pb.BrokerHeartbeatResponse
	err := b.c.Call(ctx, func(cl pb.ControllerServiceClient) error {
		var err error
		resp, err = cl.BrokerHeartbeat(ctx, &pb.BrokerHeartbeatRequest{
			BrokerId: b.ID, BrokerEpoch: epoch, CurrentMetadataOffset: off, WantShutdown: wantShutdown})
		return err
	})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.mu.offset = off
	b.mu.last = resp
	b.mu.Unlock()
	return resp, nil
}

// Start heartbeats every interval in the background until Stop.
func (b *FakeBroker) Start(interval time.Duration) {
	b.stop = make(chan struct{})
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b.mu.Lock()
			sd := b.mu.shutdown
			b.mu.Unlock()
			_, _ = b.Heartbeat(ctx, sd)
			cancel()
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// RequestShutdown makes the background heartbeats ask for a controlled shutdown.
func (b *FakeBroker) RequestShutdown() {
	b.mu.Lock()
	b.mu.shutdown = true
	b.mu.Unlock()
}

// Last is the last heartbeat answer.
func (b *FakeBroker) Last() *pb.BrokerHeartbeatResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.last
}

// Stop stops the background heartbeats (the broker "dies").
func (b *FakeBroker) Stop() {
	if b.stop != nil {
		close(b.stop)
		<-b.done
		b.stop = nil
	}
}
