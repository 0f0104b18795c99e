package controller

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The metadata log served to brokers is the Raft log itself: a record's
// offset is its entry's Raft index. Any voter serves it, up to what it has
// applied (so only committed entries leave a controller). Entries that are
// not metadata (Raft configuration changes, no-ops) are skipped, so offsets
// have gaps. When the wanted offset is older than the first entry still in
// the log store (compacted after a snapshot), the answer is the current
// image instead; the broker applies it and fetches from image.offset+1.

const (
	defaultFetchMaxBytes = 1 << 20
	maxFetchWait         = 30 * time.Second
)

// FetchMetadata long-polls the metadata log from req.from_offset.
func (s *service) FetchMetadata(ctx context.Context, req *pb.FetchMetadataRequest) (*pb.FetchMetadataResponse, error) {
	return wrap(s.c.fetchMetadata(ctx, req))
}

func (c *Controller) fetchMetadata(ctx context.Context, req *pb.FetchMetadataRequest) (*pb.FetchMetadataResponse, error) {
	if req.GetMaxWaitMs() < 0 || req.GetMaxBytes() < 0 || req.GetFromOffset() < 0 {
		return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "negative from_offset, max_wait_ms or max_bytes")
	}
	from := max(req.GetFromOffset(), 1)
	wait := min(time.Duration(req.GetMaxWaitMs())*time.Millisecond, maxFetchWait)
	img := c.fsm.Image()
	if img.Offset() < from && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		var err error
		img, err = c.fsm.WaitFor(wctx, from)
		cancel()
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err() // the caller's own deadline or cancel
		}
	}
	maxBytes := int(req.GetMaxBytes())
	if maxBytes == 0 {
		maxBytes = defaultFetchMaxBytes
	}
	return readMetadataLog(c.node.store, img, from, maxBytes, c.cfg.MaxFetchRecords)
}

// readMetadataLog reads the entries (from, img.Offset()] from the log store,
// or answers img itself when from is gone from the store.
func readMetadataLog(store raft.LogStore, img *raftfsm.Image, from int64, maxBytes, maxEntries int) (*pb.FetchMetadataResponse, error) {
	resp := &pb.FetchMetadataResponse{HighWaterOffset: img.Offset()}
	if from > img.Offset() {
		return resp, nil
	}
	first, err := store.FirstIndex()
	if err != nil {
		return nil, errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "log store: %v", err)
	}
	if first == 0 || uint64(from) < first {
		resp.Snapshot = img.ToProto()
		return resp, nil
	}
	size := 0
	var l raft.Log
	for i := uint64(from); i <= uint64(img.Offset()); i++ {
		if err := store.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) && len(resp.Entries) == 0 {
				// Compacted under us.
				resp.Snapshot = img.ToProto()
				return resp, nil
			}
			if errors.Is(err, raft.ErrLogNotFound) {
				break
			}
			return nil, errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "log store: entry %d: %v", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		var batch pb.MetadataBatch
		if err := proto.Unmarshal(l.Data, &batch); err != nil {
			// The FSM recorded it as rejected; brokers must see the same
			// gap: send it empty.
			batch.Reset()
		}
		if len(resp.Entries) > 0 && (size+len(l.Data) > maxBytes || len(resp.Entries) >= maxEntries) {
			break
		}
		size += len(l.Data)
		resp.Entries = append(resp.Entries, &pb.MetadataLogEntry{Offset: int64(i), Batch: &batch})
	}
	return resp, nil
}
