package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// ApplyResult is what FSM.Apply returns for each log entry: the value of the
// raft.ApplyFuture's Response(). Err is nil when the batch was applied, and
// wraps ErrMalformed when it was rejected (the image then only records the error).
type ApplyResult struct {
	// Offset is the entry's Raft index, the metadata offset of its records.
	Offset int64
	Err    error
}

// FSM is the metadata state machine under hashicorp/raft.
//
// Contract (as raft.FSM's): Apply runs on one goroutine, in log order, and is
// deterministic: the same entries give the same image on every voter. It never
// panics on bad data: a malformed batch is rejected whole and recorded in the
// image. Snapshot returns at once with the current immutable image; the
// encoding and the I/O happen in Persist, concurrently with Apply. Restore
// replaces the image with a snapshot's.
//
// Readers (the controller's RPC handlers) call Image, which takes no lock, or
// WaitFor/Changed to wait for newer offsets.
type FSM struct {
	img atomic.Pointer[Image]
	log *slog.Logger

	mu struct {
		sync.Mutex
		changed chan struct{} // closed and replaced on every publish
	}
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// NewFSM returns an FSM holding the empty image. log may be nil.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FSM{log: log}
	f.mu.changed = make(chan struct{})
	f.img.Store(NewImage())
	return f
}

// Image returns the current image. It never blocks; the image is immutable.
func (f *FSM) Image() *Image { return f.img.Load() }

// Changed returns a channel that is closed when the next image is published.
// Read it before Image to avoid missing a publish:
//
//	ch := f.Changed(); img := f.Image(); ... <-ch
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.changed
}

// WaitFor blocks until the image's offset is at least offset, and returns
// that image, or ctx's error (unchanged) with the current image.
func (f *FSM) WaitFor(ctx context.Context, offset int64) (*Image, error) {
	for {
		ch := f.Changed()
		img := f.Image()
		if img.Offset() >= offset {
			return img, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return f.Image(), ctx.Err()
		}
	}
}

func (f *FSM) publish(img *Image) {
	f.img.Store(img)
	f.mu.Lock()
	close(f.mu.changed)
	f.mu.changed = make(chan struct{})
	f.mu.Unlock()
}

// Apply applies one committed entry. Only LogCommand entries carry metadata;
// any other type still moves the offset so that Offset() == the last applied index.
func (f *FSM) Apply(l *raft.Log) any {
	img, res := f.apply(f.Image(), l)
	if img != nil {
		f.publish(img)
	}
	return res
}

// ApplyBatch applies several committed entries and publishes once.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	cur := f.Image()
	changed := false
	for i, l := range logs {
		img, res := f.apply(cur, l)
		if img != nil {
			cur, changed = img, true
		}
		out[i] = res
	}
	if changed {
		f.publish(cur)
	}
	return out
}

// apply returns the new image (nil: unchanged) and the ApplyResult.
func (f *FSM) apply(cur *Image, l *raft.Log) (*Image, ApplyResult) {
	off := int64(l.Index)
	if l.Type != raft.LogCommand {
		if off <= cur.offset {
			return nil, ApplyResult{Offset: off}
		}
		out := *cur
		out.offset = off
		return &out, ApplyResult{Offset: off}
	}
	img, err := ApplyData(cur, off, l.Data)
	if errors.Is(err, ErrStaleOffset) {
		f.log.Warn("raftfsm: entry at or below the applied offset", "index", l.Index, "applied", cur.offset)
		return nil, ApplyResult{Offset: off, Err: err}
	}
	if err != nil {
		f.log.Warn("raftfsm: rejected metadata batch", "index", l.Index, "err", err)
	}
	return img, ApplyResult{Offset: off, Err: err}
}

// Snapshot captures the current image; it does no encoding and no I/O.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{img: f.Image()}, nil
}

// Restore replaces the image with the snapshot read from rc.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("raftfsm: reading snapshot: %w", err)
	}
	img, err := UnmarshalSnapshot(data)
	if err != nil {
		return err
	}
	f.publish(img)
	return nil
}

// RestoreImage publishes img as the current image (a broker starting from a
// FetchMetadata snapshot, tests). img must be newer than what readers have.
func (f *FSM) RestoreImage(img *Image) { f.publish(img) }

type snapshot struct{ img *Image }

// Persist encodes the image deterministically and writes it to sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	data, err := s.img.MarshalSnapshot()
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftfsm: persisting snapshot at offset %d: %w", s.img.offset, err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
