package broker

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/broker/delayed"
	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// service is the BrokerService gRPC server. Errors become Strata error
// codes here and only here (codeOf); a bad item of a request gets its code
// and changes nothing, the others go on.
type service struct {
	pb.UnimplementedBrokerServiceServer
	b *Broker

	produces *delayed.Purgatory[storage.TopicPartition] // acks=all waiting for the HW
	fetches  *delayed.Purgatory[storage.TopicPartition] // long polls waiting for data
}

func registerService(b *Broker) {
	s := &service{
		b:        b,
		produces: delayed.NewPurgatory[storage.TopicPartition](delayed.Config{}),
		fetches:  delayed.NewPurgatory[storage.TopicPartition](delayed.Config{}),
	}
	b.svc = s
	reg := b.metrics.rpc.Registrar(b.srv) // RPC metrics (metrics.go)
	reg.RegisterService(brokerServiceDesc(), s)
	pb.RegisterGroupServiceServer(reg, &groupService{c: b.groups})
}

// brokerServiceDesc is the generated BrokerService description with one
// change: Produce decodes into a wire.ReceivedProduce, whose records alias a
// pooled buffer given back once the call has returned (the server's codec is
// always wire.Codec, which knows the type). Produce appends the records
// before it returns and keeps no slice of them.
func brokerServiceDesc() *grpc.ServiceDesc {
	d := pb.BrokerService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName == "Produce" {
			d.Methods[i].Handler = produceHandler
		}
	}
	return &d
}

func produceHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := &wire.ReceivedProduce{}
	if err := dec(in); err != nil {
		return nil, err
	}
	defer in.Release()
	s := srv.(pb.BrokerServiceServer)
	if interceptor == nil {
		return s.Produce(ctx, in.Request())
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.BrokerService_Produce_FullMethodName}
	return interceptor(ctx, in.Request(), info, func(ctx context.Context, req any) (any, error) {
		return s.Produce(ctx, req.(*pb.ProduceRequest))
	})
}

func (s *service) shutdown() {
	s.produces.Shutdown()
	s.fetches.Shutdown()
}

// partitionMoved wakes the requests waiting on a partition whose high
// watermark, log end or ISR changed.
func (s *service) partitionMoved(tp storage.TopicPartition) {
	s.produces.CheckAndComplete(tp)
	s.fetches.CheckAndComplete(tp)
}

// onFollowerAppend is the fetcher's callback: a follower's new data can
// complete consumer long polls only through its HW, which moved too.
func (b *Broker) onFollowerAppend(p *Partition) {
	if b.svc == nil {
		return
	}
	st, _ := p.State()
	b.svc.fetches.CheckAndComplete(storage.TopicPartition{Topic: st.Topic, Partition: st.Index})
}

// codeOf maps an error of the data path to its Strata error code.
func codeOf(err error) pb.ErrorCode {
	switch {
	case err == nil:
		return pb.ErrorCode_NONE
	case errors.Is(err, ErrNotLeaderOrFollower):
		return pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
	case errors.Is(err, ErrFencedLeaderEpoch):
		return pb.ErrorCode_FENCED_LEADER_EPOCH
	case errors.Is(err, ErrUnknownLeaderEpoch):
		return pb.ErrorCode_UNKNOWN_LEADER_EPOCH
	case errors.Is(err, ErrNotEnoughReplicasAfterAppend):
		return pb.ErrorCode_NOT_ENOUGH_REPLICAS_AFTER_APPEND
	case errors.Is(err, ErrNotEnoughReplicas):
		return pb.ErrorCode_NOT_ENOUGH_REPLICAS
	case errors.Is(err, ErrOffsetNotAvailable):
		return pb.ErrorCode_OFFSET_NOT_AVAILABLE
	case errors.Is(err, ErrInvalidRequiredAcks):
		return pb.ErrorCode_INVALID_REQUIRED_ACKS
	case errors.Is(err, storage.ErrOffsetOutOfRange):
		return pb.ErrorCode_OFFSET_OUT_OF_RANGE
	case errors.Is(err, storage.ErrRecordTooLarge):
		return pb.ErrorCode_MESSAGE_TOO_LARGE
	case errors.Is(err, record.ErrUnknownCodec):
		return pb.ErrorCode_UNSUPPORTED_COMPRESSION_TYPE
	case errors.Is(err, record.ErrCorruptRecord), errors.Is(err, record.ErrShortBatch):
		return pb.ErrorCode_CORRUPT_MESSAGE
	case errors.Is(err, storage.ErrStorageFailed):
		return pb.ErrorCode_STORAGE_ERROR
	case errors.Is(err, context.DeadlineExceeded):
		return pb.ErrorCode_REQUEST_TIMED_OUT
	case errors.Is(err, errUnknownPartition):
		return pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION
	case errors.Is(err, storage.ErrOutOfOrderSequence):
		return pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER
	case errors.Is(err, storage.ErrInvalidProducerEpoch):
		return pb.ErrorCode_INVALID_PRODUCER_EPOCH
	case errors.Is(err, storage.ErrUnknownProducerID):
		return pb.ErrorCode_UNKNOWN_PRODUCER_ID
	}
	return pb.ErrorCode_UNKNOWN_SERVER_ERROR
}

var errUnknownPartition = errors.New("broker: unknown topic or partition")

// lookup finds this broker's replica of a partition; a partition that exists
// but is not hosted here is NOT_LEADER_OR_FOLLOWER (with the leader named by
// leaderOf), one that does not exist UNKNOWN_TOPIC_OR_PARTITION.
func (s *service) lookup(topic string, partition int32) (*Partition, error) {
	if p := s.b.replicas.get(topic, partition); p != nil {
		return p, nil
	}
	img := s.b.image.Load()
	if t := img.Topic(topic); t != nil && t.Partition(partition) != nil {
		return nil, ErrNotLeaderOrFollower
	}
	return nil, errUnknownPartition
}

// leaderOf is the partition's current leader and epoch in the image (the
// hint that goes with NOT_LEADER_OR_FOLLOWER and the epoch errors).
func leaderOf(img *raftfsm.Image, topic string, partition int32) *pb.PartitionLeader {
	t := img.Topic(topic)
	if t == nil {
		return nil
	}
	ip := t.Partition(partition)
	if ip == nil {
		return nil
	}
	return &pb.PartitionLeader{LeaderId: ip.Leader, LeaderEpoch: ip.LeaderEpoch}
}

// nodeEndpoints lists the brokers a client may need after a leader hint.
func nodeEndpoints(img *raftfsm.Image) []*pb.BrokerNode {
	var out []*pb.BrokerNode
	for _, br := range img.Brokers() {
		if br.Fenced {
			continue
		}
		if l, ok := br.Listener(ListenerName); ok {
			out = append(out, &pb.BrokerNode{NodeId: br.ID, Host: l.Host, Port: l.Port, Rack: br.Rack})
		}
	}
	return out
}

var _ = wire.Name
