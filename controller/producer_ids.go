package controller

import (
	"context"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// AllocateProducerIds hands a broker the next block of producer ids
// (Config.ProducerIDBlockSize of them), recorded in the metadata log so no
// id is ever handed out twice, across failovers too.
func (s *service) AllocateProducerIds(ctx context.Context, req *pb.AllocateProducerIdsRequest) (*pb.AllocateProducerIdsResponse, error) {
	return wrap(s.c.allocateProducerIDs(ctx, req))
}

func (c *Controller) allocateProducerIDs(ctx context.Context, req *pb.AllocateProducerIdsRequest) (*pb.AllocateProducerIdsResponse, error) {
	resp := &pb.AllocateProducerIdsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		start, err := decideProducerIDs(t, req.GetBrokerId(), req.GetBrokerEpoch(), c.cfg.ProducerIDBlockSize)
		resp.ProducerIdStart, resp.ProducerIdLen = start, int32(c.cfg.ProducerIDBlockSize)
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// decideProducerIDs allocates [start, start+size) to the broker.
func decideProducerIDs(t *txn, broker int32, epoch, size int64) (int64, error) {
	if err := checkBrokerEpoch(t.img, broker, epoch); err != nil {
		return 0, err
	}
	start := t.img.NextProducerID()
	if start > (1<<63-1)-size {
		return 0, errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "producer ids exhausted")
	}
	return start, t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_ProducerIds{ProducerIds: &pb.ProducerIdsRecord{
		BrokerId: broker, BrokerEpoch: epoch, NextProducerId: start + size}}})
}
