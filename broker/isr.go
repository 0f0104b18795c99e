package broker

import (
	"context"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
)

// proposeISR queues an ISR change for the active controller.
func (b *Broker) proposeISR(prop *ISRProposal) {
	if prop == nil {
		return
	}
	select {
	case b.isr <- prop:
	case <-b.ctx.Done():
	}
}

// isrLoop sends ISR proposals with AlterPartition, one at a time per
// partition (the Partition holds at most one in flight), and applies the
// controller's answer.
func (b *Broker) isrLoop() {
	for {
		var prop *ISRProposal
		select {
		case <-b.ctx.Done():
			return
		case prop = <-b.isr:
		}
		b.sendISR(prop)
	}
}

func (b *Broker) sendISR(prop *ISRProposal) {
	img := b.image.Load()
	t := img.TopicByID(prop.TopicID)
	if t == nil {
		return
	}
	p := b.replicas.get(t.Name(), prop.Partition)
	if p == nil {
		return
	}
	before, _ := p.State() // the ISR the proposal changes (it is not sent yet)
	isrBefore := len(before.ISR)
	members := make([]*pb.IsrMember, 0, len(prop.NewISR))
	for _, r := range prop.NewISR {
		epoch := p.FollowerBrokerEpoch(r)
		if r == b.cfg.NodeID {
			epoch = b.epoch.Load()
		}
		members = append(members, &pb.IsrMember{BrokerId: r, BrokerEpoch: epoch})
	}
	req := &pb.AlterPartitionRequest{
		BrokerId:    b.cfg.NodeID,
		BrokerEpoch: b.epoch.Load(),
		Topics: []*pb.AlterPartitionTopic{{
			TopicId: prop.TopicID[:],
			Partitions: []*pb.AlterPartitionPartition{{
				Partition: prop.Partition, LeaderEpoch: prop.LeaderEpoch,
				PartitionEpoch: prop.PartitionEpoch, NewIsr: members,
			}},
		}},
	}
	var resp *pb.AlterPartitionResponse
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	err := b.ctrl.call(ctx, false, func(ctx context.Context, c pb.ControllerServiceClient) error {
		var err error
		resp, err = c.AlterPartition(ctx, req)
		return err
	})
	if err != nil {
		b.log.Warn("broker: alter partition", "topic", t.Name(), "partition", prop.Partition, "err", err)
		p.ProposalDone(nil)
		return
	}
	for _, tr := range resp.Topics {
		for _, pr := range tr.Partitions {
			if pr.Partition != prop.Partition {
				continue
			}
			if pr.ErrorCode != pb.ErrorCode_NONE && pr.LeaderEpoch == 0 && pr.PartitionEpoch == 0 {
				b.log.Warn("broker: alter partition refused", "topic", t.Name(), "partition", prop.Partition, "code", pr.ErrorCode, "msg", pr.ErrorMessage)
				p.ProposalDone(nil)
				return
			}
			cur, _ := p.State()
			st := cur
			st.Leader, st.LeaderEpoch, st.PartitionEpoch, st.ISR = pr.Leader, pr.LeaderEpoch, pr.PartitionEpoch, pr.Isr
			// A stale answer leaves the pending proposal alone: the newer
			// state it lost to was applied from an image, which cleared the
			// proposal then (and any later proposal is someone else's).
			if err := p.ProposalDone(&st); err != nil && !isStale(err) {
				b.log.Warn("broker: apply alter partition result", "topic", t.Name(), "partition", prop.Partition, "err", err)
			}
			if pr.ErrorCode == pb.ErrorCode_NONE {
				b.metrics.isrChanged(isrBefore, len(prop.NewISR))
			}
			if b.svc != nil {
				b.svc.partitionMoved(storage.TopicPartition{Topic: t.Name(), Partition: prop.Partition})
			}
			return
		}
	}
	p.ProposalDone(nil)
}

// maintenanceLoop shrinks ISRs of lagging followers, and runs the logs'
// retention, compaction and flush.ms, writing checkpoints now and then.
func (b *Broker) maintenanceLoop() {
	shrink := time.NewTicker(max(b.cfg.ReplicaLagTimeMax/2, 10*time.Millisecond))
	defer shrink.Stop()
	logs := time.NewTicker(time.Second)
	defer logs.Stop()
	rounds := 0
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-shrink.C:
			for _, p := range b.replicas.leaders() {
				b.proposeISR(p.MaybeShrinkISR())
			}
		case <-logs.C:
			if err := b.logs.RunOnce(); err != nil {
				b.log.Warn("broker: log maintenance", "err", err)
			}
			if rounds++; rounds%5 == 0 {
				if err := b.logs.Checkpoint(); err != nil {
					b.log.Warn("broker: checkpoints", "err", err)
				}
			}
		}
	}
}
