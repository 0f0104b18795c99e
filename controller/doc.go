// Package controller is Strata's controller quorum: the Raft node that
// replicates the metadata log (hashicorp/raft over bbolt stores and a file
// snapshot store), the one port it shares with the ControllerService gRPC
// server, and the active controller — the Raft leader — that makes every
// cluster decision and writes it to the log as metadata records.
//
// # Process layout
//
//	           one TCP listener (Config.Addr)
//	                      |
//	                  [ mux ]  peeks the first byte of every accepted conn
//	                 /        \
//	   'R' (0x52) marker      anything else (gRPC's HTTP/2 preface "PRI * ...")
//	        |                        |
//	raft NetworkTransport      grpc.Server: ControllerService + reflection
//	        |                        |
//	   raft.Raft  <---- Apply ---- active controller event loop (leader only)
//	        |
//	   raftfsm.FSM  -> immutable raftfsm.Image read by every handler
//
// # Decisions
//
// Every decision (placement, election, ISR change, fencing, reassignment
// step, producer id block) is computed by a pure function over the current
// image that returns the records to propose (decide.go and friends); the
// event loop proposes them as one raft.Apply and answers the request only
// after the entry is committed and applied. A follower answers
// NOT_CONTROLLER with the leader's id and address.
//
// # On disk
//
//	<data-dir>/raft/raft.db        bbolt: raft log + stable store (raft-boltdb/v2)
//	<data-dir>/raft/snapshots/     raft.FileSnapshotStore
package controller
