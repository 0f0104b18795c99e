// Package raftfsm is Strata's metadata state machine: it applies the records
// of the metadata log (proto/strata/v1/metadata.proto) to an Image — brokers,
// topics by name and id, partitions, configs, producer ids, features.
//
// The same code runs in two places: under hashicorp/raft on every controller
// (FSM), and in every broker replaying what ControllerService.FetchMetadata
// returns (Replay, ApplyBatch). Both therefore see the same image at the same
// offset.
//
// # Contract
//
//   - Pure and deterministic. ApplyBatch/ReplayRecords take an image and a
//     batch and return a new image; they read no clock, no randomness, no
//     environment, and iterate no map where order could leak into the result.
//     The same batches from the same image give the same image, and the same
//     snapshot bytes (MarshalSnapshot sorts everything and marshals
//     deterministically).
//   - Atomic batches. One Raft entry carries one MetadataBatch; if any record
//     of it is malformed (unknown topic id, epochs not advancing by the rules,
//     an empty ISR, ...) the whole batch is rejected: the image only moves its
//     offset and records the error (Image.ErrorCount, Image.LastErrors). A
//     voter never panics on bad data.
//   - Epochs are carried in the records: the active controller computes them
//     (ChangedPartition shows the rules), the state machine checks them.
//   - Immutable images. A published Image is never modified; each change
//     builds a new one that shares unchanged topics and partitions with the
//     old (copy-on-write by topic, a persistent hash trie per index). Readers
//     take no lock: FSM.Image is an atomic load.
//   - FSM.Apply runs on raft's FSM goroutine. FSM.Snapshot returns at once,
//     capturing the current image; encoding and I/O happen in Persist, which
//     may run concurrently with later Applies. FSM.Restore decodes and checks a
//     snapshot and publishes it.
//
// The metadata offset of a record is the Raft index of its entry; an image's
// Offset is the index of the last metadata entry applied (or rejected).
// hashicorp/raft hands only LogCommand entries to the FSM (configuration
// changes and no-ops never reach it), so Offset is an index a broker replaying
// FetchMetadata's entries reaches too: compare it with a broker's offset to
// decide whether the broker has caught up.
package raftfsm
