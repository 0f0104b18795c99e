package broker

// A follower's fetches on one long-lived FetchStream per source instead of a
// unary Fetch per round. Each round is still one request and one answer, in
// order, with the same long poll on the leader; what the stream saves is the
// per-call set-up: a new HTTP/2 stream with its headers and trailers to
// encode and decode, a handler goroutine and its contexts. A leader that
// does not serve FetchStream (an older version during a rolling upgrade)
// answers Unimplemented, and the source fetches with unary Fetch for
// FetcherConfig.StreamRetry before it tries a stream again.

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// StreamFetcher is a leader client that can open a FetchStream whose answers
// decode into pooled buffers (wire.ReceivedFetch). The broker's own
// connections implement it; a client that does not (a test's fake leader)
// is called through Fetch.
type StreamFetcher interface {
	OpenFetchStream(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStream, error)
}

// fetchStream is a source's open FetchStream; cancel ends it.
type fetchStream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
}

// streamFetch sends req on the source's FetchStream, opening one if none is
// open, and waits for its answer until ctx is done. Any failure closes the
// stream (the next round opens another); ctx ending mid-round cuts it.
func (s *fetcherSource) streamFetch(ctx context.Context, sf StreamFetcher, req *pb.FetchRequest, opts ...grpc.CallOption) (*pb.FetchResponse, func(), error) {
	if s.stream == nil {
		// The round's deadline bounds the opening too: a leader whose
		// connection is still being set up would hold NewStream for as long.
		sctx, cancel := context.WithCancel(s.ctx)
		stop := context.AfterFunc(ctx, cancel)
		cs, err := sf.OpenFetchStream(sctx, opts...)
		stop()
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
			return nil, nil, err
		}
		s.stream = &fetchStream{cs: cs, cancel: cancel}
		if sctx.Err() != nil { // the deadline passed just as the stream opened
			s.closeStream()
			return nil, nil, ctx.Err()
		}
	}
	st := s.stream
	stop := context.AfterFunc(ctx, st.cancel)
	rf := &wire.ReceivedFetch{}
	err := st.cs.SendMsg(req)
	if errors.Is(err, io.EOF) {
		// The stream ended on the leader's side; its status comes with RecvMsg.
		err = nil
	}
	if err == nil {
		err = st.cs.RecvMsg(rf)
	}
	if !stop() || err != nil {
		s.closeStream()
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("fetch stream ended by the leader")
	}
	if err != nil {
		if ctx.Err() != nil && status.Code(err) == codes.Canceled {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, nil, err
	}
	return rf.Response(), rf.Release, nil
}

// closeStream ends the source's FetchStream, if one is open.
func (s *fetcherSource) closeStream() {
	if s.stream != nil {
		s.stream.cancel()
		s.stream = nil
	}
}

// OpenFetchStream opens a FetchStream to the broker; its answers decode into
// wire.ReceivedFetch.
func (c replicaClient) OpenFetchStream(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.FetchStream(ctx, append(opts, wire.CallOption())...)
}
