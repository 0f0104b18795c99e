package wire

import (
	"google.golang.org/grpc/mem"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// ReceivedProduce is a ProduceRequest decoded into a buffer from Pool: the
// records fields alias that one buffer, which goes back to the pool on
// Release. The default decoding gathers the message into a new buffer the
// runtime zeroes and the garbage collector later frees, per request; this
// one reuses the buffer, and a request that arrived in one HTTP/2 frame is
// not copied at all (the frame's own buffer is kept).
//
// The broker's Produce handler decodes into a ReceivedProduce (the codec's
// Unmarshal knows the type), calls the service with Request, and releases it
// when the call returns: nothing may keep a records slice past Release.
type ReceivedProduce struct {
	req pb.ProduceRequest
	buf mem.Buffer
}

// Request is the decoded message; its records are valid until Release.
func (r *ReceivedProduce) Request() *pb.ProduceRequest { return &r.req }

// Release gives the buffer back; the records must not be read afterwards.
// Releasing twice, or a request never decoded, is a no-op.
func (r *ReceivedProduce) Release() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
	r.req.Reset()
}

// unmarshalReceived decodes data into r, keeping data (one buffer) or a
// pooled gather of it.
func unmarshalReceived(data mem.BufferSlice, r *ReceivedProduce) error {
	r.Release()
	buf := data.MaterializeToBuffer(Pool)
	if err := unmarshalProduce(buf.ReadOnlyData(), &r.req); err != nil {
		buf.Free()
		r.req.Reset()
		return err
	}
	r.buf = buf
	return nil
}

// ReceivedFetch is a FetchResponse decoded into a buffer from Pool, for a
// caller that is done with the records at a known point (a follower, once
// it has appended them): the records fields alias that buffer until
// Release, instead of each being copied out by proto.Unmarshal into memory
// of its own. Pass it as the reply of a Fetch call made with CallOption.
type ReceivedFetch struct {
	resp pb.FetchResponse
	buf  mem.Buffer
}

// Response is the decoded message; its records are valid until Release.
func (r *ReceivedFetch) Response() *pb.FetchResponse { return &r.resp }

// Release gives the buffer back; the records must not be read afterwards.
func (r *ReceivedFetch) Release() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
	r.resp.Reset()
}

func unmarshalReceivedFetch(data mem.BufferSlice, r *ReceivedFetch) error {
	r.Release()
	buf := data.MaterializeToBuffer(Pool)
	if err := unmarshalFetchResponse(buf.ReadOnlyData(), &r.resp); err != nil {
		buf.Free()
		r.resp.Reset()
		return err
	}
	r.buf = buf
	return nil
}
