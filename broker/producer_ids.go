package broker

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// producerIDs hands out producer ids from blocks the active controller
// allocates to this broker (AllocateProducerIds, recorded in the metadata
// log), as Kafka's ProducerIdManager does. A block is fetched when the
// previous one is used up; a broker restart abandons the rest of its block.
type producerIDs struct {
	mu   sync.Mutex // held across the controller call: one refill at a time
	next int64
	end  int64 // exclusive
}

// InitProducerId answers a new producer id with epoch 0.
func (s *service) InitProducerId(ctx context.Context, _ *pb.InitProducerIdRequest) (*pb.InitProducerIdResponse, error) {
	id, err := s.b.nextProducerID(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		st := status.New(codes.Unavailable, "broker: allocate a producer id: "+err.Error())
		if d, derr := st.WithDetails(&pb.ErrorInfo{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Message: "no producer id block from the controller quorum: " + err.Error(), Retriable: true}); derr == nil {
			st = d
		}
		return nil, st.Err()
	}
	return &pb.InitProducerIdResponse{ProducerId: id, ProducerEpoch: 0}, nil
}

func (b *Broker) nextProducerID(ctx context.Context) (int64, error) {
	ids := &b.producerIDs
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.next < ids.end {
		id := ids.next
		ids.next++
		return id, nil
	}
	var resp *pb.AllocateProducerIdsResponse
	err := b.ctrl.call(ctx, false, func(ctx context.Context, c pb.ControllerServiceClient) error {
		var err error
		resp, err = c.AllocateProducerIds(ctx, &pb.AllocateProducerIdsRequest{BrokerId: b.cfg.NodeID, BrokerEpoch: b.Epoch()})
		return err
	})
	if err != nil {
		return 0, err
	}
	ids.next, ids.end = resp.GetProducerIdStart()+1, resp.GetProducerIdStart()+int64(resp.GetProducerIdLen())
	return resp.GetProducerIdStart(), nil
}
