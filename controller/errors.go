package controller

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Error is a typed controller error: an ErrorCode from the proto plus what a
// caller needs to act on it. Decision functions return *Error; the service
// edge turns a request-level *Error into a gRPC status (toGRPC) and a
// per-item one into the item's error_code / error_message.
type Error struct {
	Code    pb.ErrorCode
	Message string
	// NOT_CONTROLLER: the active controller when known (-1, "" otherwise).
	LeaderID   int32
	LeaderAddr string
	// STALE_BROKER_EPOCH, FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION: the current value.
	CurrentEpoch int64
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "controller: " + e.Code.String()
	}
	return fmt.Sprintf("controller: %s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, &Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Retriable reports whether the same request may succeed if retried.
func (e *Error) Retriable() bool { return retriable(e.Code) }

func retriable(c pb.ErrorCode) bool {
	switch c {
	case pb.ErrorCode_UNKNOWN_SERVER_ERROR, pb.ErrorCode_REQUEST_TIMED_OUT, pb.ErrorCode_NOT_CONTROLLER,
		pb.ErrorCode_UNKNOWN_LEADER_EPOCH, pb.ErrorCode_NOT_ENOUGH_REPLICAS, pb.ErrorCode_BROKER_NOT_AVAILABLE,
		pb.ErrorCode_ELIGIBLE_LEADERS_NOT_AVAILABLE, pb.ErrorCode_PREFERRED_LEADER_NOT_AVAILABLE:
		return true
	}
	return false
}

func errorf(code pb.ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), LeaderID: -1}
}

func epochError(code pb.ErrorCode, current int64, format string, args ...any) *Error {
	e := errorf(code, format, args...)
	e.CurrentEpoch = current
	return e
}

// ErrorCode extracts the code of err: NONE for nil, the code of an *Error,
// REQUEST_TIMED_OUT for a deadline, UNKNOWN_SERVER_ERROR otherwise.
func ErrorCode(err error) pb.ErrorCode {
	if err == nil {
		return pb.ErrorCode_NONE
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return pb.ErrorCode_REQUEST_TIMED_OUT
	}
	return pb.ErrorCode_UNKNOWN_SERVER_ERROR
}

// itemError is the (code, message) pair of a per-item result.
func itemError(err error) (pb.ErrorCode, string) {
	if err == nil {
		return pb.ErrorCode_NONE, ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Message
	}
	return ErrorCode(err), err.Error()
}

// toGRPC translates a request-level error into a gRPC status, once, at the
// service edge: an *Error becomes a status with one ErrorInfo detail; context
// errors pass through as the status gRPC itself uses for them.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	var e *Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) {
			return status.FromContextError(err).Err()
		}
		e = &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: err.Error(), LeaderID: -1}
	}
	st := status.New(grpcCode(e.Code), e.Error())
	if d, derr := st.WithDetails(&pb.ErrorInfo{
		Code:          e.Code,
		Message:       e.Message,
		LeaderId:      e.LeaderID,
		LeaderAddress: e.LeaderAddr,
		CurrentEpoch:  e.CurrentEpoch,
		Retriable:     e.Retriable(),
	}); derr == nil {
		st = d
	}
	return st.Err()
}

// FromGRPC recovers the *Error of a status made by toGRPC (for clients and
// tests); other errors are returned unchanged.
func FromGRPC(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*pb.ErrorInfo); ok {
			return &Error{Code: info.GetCode(), Message: info.GetMessage(), LeaderID: info.GetLeaderId(),
				LeaderAddr: info.GetLeaderAddress(), CurrentEpoch: info.GetCurrentEpoch()}
		}
	}
	return err
}

func grpcCode(c pb.ErrorCode) codes.Code {
	switch c {
	case pb.ErrorCode_NONE:
		return codes.OK
	case pb.ErrorCode_INVALID_REQUEST, pb.ErrorCode_INVALID_TOPIC_EXCEPTION, pb.ErrorCode_INVALID_PARTITIONS,
		pb.ErrorCode_INVALID_REPLICATION_FACTOR, pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, pb.ErrorCode_INVALID_CONFIG:
		return codes.InvalidArgument
	case pb.ErrorCode_REQUEST_TIMED_OUT:
		return codes.DeadlineExceeded
	case pb.ErrorCode_NOT_CONTROLLER, pb.ErrorCode_BROKER_NOT_AVAILABLE:
		return codes.Unavailable
	case pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, pb.ErrorCode_UNKNOWN_TOPIC_ID, pb.ErrorCode_BROKER_ID_NOT_REGISTERED,
		pb.ErrorCode_VOTER_NOT_FOUND, pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS:
		return codes.NotFound
	case pb.ErrorCode_TOPIC_ALREADY_EXISTS, pb.ErrorCode_DUPLICATE_BROKER_REGISTRATION, pb.ErrorCode_DUPLICATE_VOTER:
		return codes.AlreadyExists
	case pb.ErrorCode_POLICY_VIOLATION:
		return codes.PermissionDenied
	case pb.ErrorCode_STALE_BROKER_EPOCH, pb.ErrorCode_FENCED_LEADER_EPOCH, pb.ErrorCode_INVALID_UPDATE_VERSION,
		pb.ErrorCode_INCONSISTENT_CLUSTER_ID, pb.ErrorCode_INELIGIBLE_REPLICA, pb.ErrorCode_REASSIGNMENT_IN_PROGRESS,
		pb.ErrorCode_ELECTION_NOT_NEEDED, pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, pb.ErrorCode_UNKNOWN_LEADER_EPOCH,
		pb.ErrorCode_NOT_ENOUGH_REPLICAS:
		return codes.FailedPrecondition
	case pb.ErrorCode_PREFERRED_LEADER_NOT_AVAILABLE, pb.ErrorCode_ELIGIBLE_LEADERS_NOT_AVAILABLE:
		return codes.Unavailable
	}
	return codes.Internal
}
