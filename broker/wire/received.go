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
	held
}

// Request is the decoded message; its records are valid until Release.
func (r *ReceivedProduce) Request() *pb.ProduceRequest { return &r.req }

// Release gives the buffer back; the records must not be read afterwards.
// Releasing twice, or a request never decoded, is a no-op.
func (r *ReceivedProduce) Release() { r.release(&r.req) }

// ReceivedFetch is a FetchResponse decoded into a buffer from Pool, for a
// caller that is done with the records at a known point (a follower, once
// it has appended them; the consumer, once it has copied them out): the
// records fields alias that buffer until Release, instead of each being
// copied out by proto.Unmarshal into memory of its own. Pass it as the reply
// of a Fetch call made with CallOption.
type ReceivedFetch struct {
	resp pb.FetchResponse
	held
}

// Response is the decoded message; its records are valid until Release.
func (r *ReceivedFetch) Response() *pb.FetchResponse { return &r.resp }

// Release gives the buffer back; the records must not be read afterwards.
func (r *ReceivedFetch) Release() { r.release(&r.resp) }

// held is the pooled buffer a received message's records alias.
type held struct{ buf mem.Buffer }

// release frees the buffer, if any, and empties m.
func (h *held) release(m interface{ Reset() }) {
	if h.buf != nil {
		h.buf.Free()
		h.buf = nil
	}
	m.Reset()
}

// decode releases what h held, then decodes data into m with decode,
// keeping data (one buffer) or a pooled gather of it; on an error nothing
// is kept and m is empty.
func (h *held) decode(data mem.BufferSlice, m interface{ Reset() }, decode func([]byte) error) error {
	h.release(m)
	buf := data.MaterializeToBuffer(Pool)
	if err := decode(buf.ReadOnlyData()); err != nil {
		buf.Free()
		m.Reset()
		return err
	}
	h.buf = buf
	return nil
}

func unmarshalReceived(data mem.BufferSlice, r *ReceivedProduce) error {
	return r.decode(data, &r.req, func(b []byte) error { return unmarshalProduce(b, &r.req) })
}

func unmarshalReceivedFetch(data mem.BufferSlice, r *ReceivedFetch) error {
	return r.decode(data, &r.resp, func(b []byte) error { return unmarshalFetchResponse(b, &r.resp) })
}
