package controller

import (
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// service is the ControllerService gRPC server. Each RPC family lives in
// its own file (brokers.go, topics.go, configs.go, partitions.go,
// reassign.go, metadata_log.go, producer_ids.go, quorum.go). Handlers return
// request-level failures as Go errors; wrap translates them to gRPC status
// once, here at the edge.
type service struct {
	pb.UnimplementedControllerServiceServer
	c *Controller
}

// wrap is the one translation point from Go errors to gRPC status.
func wrap[T any](resp T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, toGRPC(err)
	}
	return resp, nil
}
