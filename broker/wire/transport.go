package wire

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

// FlowWindow is the HTTP/2 flow-control window, per stream and per
// connection, that every Strata endpoint announces for what it receives.
//
// gRPC's default is a 64 KiB window grown by BDP estimation: the receiver
// pings the sender as data arrives and sends WINDOW_UPDATE frames every
// quarter window, a few extra writes and reads per request that on loopback
// cost as much as the request itself (strace of the RF=3 benchmark: 9.4
// socket writes per 16 KiB produce where 6 carry messages). A fixed window
// turns BDP estimation off and makes the updates rare. The window is a
// limit, not a buffer: nothing is allocated for it, and a receiver still
// holds at most one message per stream before its handler takes it.
const FlowWindow = 16 << 20

// StreamWorkers is how many long-lived goroutines of a server run its RPC
// handlers. Without them gRPC starts a goroutine per RPC, whose stack grows
// again each time (runtime.newstack/copystack: 4.5% of the RF=3 produce
// benchmark's CPU); a request that finds every worker busy (long polls, acks=all
// produces waiting) still gets a goroutine of its own.
const StreamWorkers = 32

// ServerOptions are the transport options of a gRPC server that serves
// Strata messages: buffers from Pool, the FlowWindow and StreamWorkers.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		experimental.BufferPool(Pool),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.InitialWindowSize(FlowWindow),
		grpc.InitialConnWindowSize(FlowWindow),
	}
}

// DialOptions are the transport options of a client connection to a
// broker: buffers from Pool and the FlowWindow.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		experimental.WithBufferPool(Pool),
		grpc.WithInitialWindowSize(FlowWindow),
		grpc.WithInitialConnWindowSize(FlowWindow),
	}
}
