// Package wire is Strata's zero-copy gRPC codec for record batches
// (DESIGN.md §4, §7): a grpc encoding.CodecV2, registered under the
// content-subtype "strata-zc" (Name), that hands gRPC the batch bytes — on
// the broker the stored ones (a pooled pread buffer or an mmap'd region), on
// the client a producer's built batches — instead of marshalling them into a
// new buffer first.
//
// # Encoding
//
// FetchResponse and SubscribeResponse (and their FetchTopicResult and
// FetchPartitionResult) are encoded by hand with protowire; every other
// message goes to gRPC's default "proto" codec, so one codec serves the whole
// BrokerService. The output of Marshal is a mem.BufferSlice:
//
//	[ header bytes ][ records of p0 ][ header bytes ][ records of p1 ] ... [ header bytes ]
//	  one pooled      the caller's     (slices of the   the caller's
//	  buffer          bytes, by        same header      bytes
//	                  reference        buffer)
//
// The header buffer holds every ordinary field — tags, lengths, offsets,
// error codes, leader hints, decoded records — and the tag and length of
// each records field; the records bytes follow as buffers of their own that
// wrap the caller's slices without copying. Records of at most 1 KiB are
// copied into the header (a buffer of its own costs more than the copy).
// The concatenation is byte-identical to proto.Marshal of the same message
// (fields in number order, proto3 zero values omitted, unknown fields last;
// the messages have no maps, so deterministic marshalling is the same too):
// the peer decodes it with any protobuf library, and the codec is invisible
// to it.
//
// The client's Produce goes the same way in the other direction: a
// ProduceRequest (this package's type, not the generated one) names each
// partition's records as a list of built batches, and Marshal sends every
// batch of more than 1 KiB by reference, so the producer neither
// concatenates its batches nor has protobuf copy them (produce_encode.go).
// The bytes are proto.Marshal's of the pb.ProduceRequest with the batches
// concatenated; the broker decodes an ordinary request. Its batches are
// owned by the caller again once the request is settled and gRPC has freed
// them (ProduceRequest.OnRelease, Settle).
//
// Unmarshal is the default proto codec's, except for the received Produce
// and Fetch messages whose records alias the received bytes (see
// Codec.Unmarshal).
//
// # Who owns the records memory
//
// A FetchResponse is an ordinary generated message; its records fields are
// []byte. Memory that must be given back — a storage.GetBuffer buffer, a
// storage.MappedRegion — is tied to the message with Attach (AttachPooled,
// AttachMapped), which records the release function in a side table keyed
// by a weak pointer to the message. Marshal takes the entry out of the table
// and turns it into the mem.BufferPool of the records buffers it emits; gRPC
// frees each buffer when its HTTP/2 writer has copied the last byte out of
// it, and the last free runs the release functions — exactly once, after
// the bytes are out of the memory. If the message never reaches this codec
// (the handler returned an error, the RPC used another codec) a runtime
// cleanup runs them once the message is garbage; Discard runs them at once.
// The side table was chosen over a Go wrapper type because the generated
// BrokerServiceServer.Fetch must return *pb.FetchResponse: the handler keeps
// its ordinary signature, and code that never attaches anything pays one
// map-length check per response.
//
// A broker server should use ServerOption (grpc.ForceServerCodecV2): since
// the bytes are the same, every client then gets the zero-copy path, whatever
// content-subtype it sent, and attached memory is always released as soon
// as it is written. Clients may also opt in with CallOption.
//
// Caveat: a stats.Handler that re-marshals OutPayload.Payload sees the
// message after its records memory may have been released; do not install
// one on a zero-copy broker. (gRPC's binary logger is safe: it logs the
// encoded bytes while it still holds them.)
//
// # Copies per fetched byte, page cache to socket
//
// Default "proto" codec, records read with pread into a pooled buffer:
//
//	(a) pread: page cache -> pooled buffer                 1 copy (kernel)
//	(b) proto.Marshal: records -> marshal buffer           1 copy
//	(c) HTTP/2 framer: marshal buffer -> write buffer      1 copy
//	(d) write(2): write buffer -> socket buffer            1 copy (kernel)
//	                                                       4 copies, 2 in user space
//
// This codec:
//
//	(a) pread into a pooled buffer                         1 copy (kernel), or 0 with mmap
//	(b) —                                                  0: the buffer goes to gRPC as is
//	(c) HTTP/2 framer: records -> write buffer             1 copy
//	(d) write(2): write buffer -> socket buffer            1 copy (kernel)
//	                                                       3 copies (2 with mmap), 1 in user space
//
// With grpc.WriteBufferSize(0) on the server, the framer writes each frame's
// slices straight to the socket and (c) disappears as well: 2 copies with
// pread, 1 (the kernel's socket copy) with mmap — at the price of more
// write(2) calls per message (a frame is at most 16 KiB). gRPC offers no
// sendfile path: the socket copy (d) stays; only a raw TCP transport with
// storage.Region.WriteTo (sendfile) would remove it.
//
// The receiving side — a follower, the Go consumer — decodes into a
// ReceivedFetch: the kernel's copy out of the socket, the HTTP/2 framer's
// copy of each DATA frame into a buffer from Pool, and one gather into
// another buffer from Pool (none when the answer came in one frame), which
// the records alias until the caller's Release. An aliasing decode into a
// new gathered buffer was measured earlier and gained nothing
// (BenchmarkFetchDecode in commit b0a216e): Go zeroes that buffer, which
// costs what the saved proto.Unmarshal copy did. Pool neither zeroes nor
// leaves buffers to the garbage collector, and that is what made the
// difference (BenchmarkConsumer 384-482 -> 502-641 MB/s).
//
// Figures, with the commands that produced them: README.md in this directory.
package wire
