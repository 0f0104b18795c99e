package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Error is every error the client returns about a request: the Strata error
// code, whether retrying can help, and a message that says what to do.
// Context errors are returned unchanged (errors.Is(err, context.Canceled)).
type Error struct {
	Code      pb.ErrorCode
	Message   string
	Retriable bool

	leaderAddr string // NOT_CONTROLLER: where the active controller is
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "strata: " + e.Code.String()
	}
	return fmt.Sprintf("strata: %s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, &Error{Code: X}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

// retriableCodes are the codes a retry (after a metadata refresh) can cure.
var retriableCodes = map[pb.ErrorCode]bool{
	pb.ErrorCode_NOT_LEADER_OR_FOLLOWER: true, pb.ErrorCode_LEADER_NOT_AVAILABLE: true,
	pb.ErrorCode_FENCED_LEADER_EPOCH: true, pb.ErrorCode_UNKNOWN_LEADER_EPOCH: true,
	pb.ErrorCode_NOT_ENOUGH_REPLICAS: true, pb.ErrorCode_NOT_ENOUGH_REPLICAS_AFTER_APPEND: true,
	pb.ErrorCode_REQUEST_TIMED_OUT: true, pb.ErrorCode_NOT_CONTROLLER: true,
	pb.ErrorCode_BROKER_NOT_AVAILABLE: true, pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION: true,
	pb.ErrorCode_STORAGE_ERROR: true, pb.ErrorCode_OFFSET_NOT_AVAILABLE: true,
	pb.ErrorCode_COORDINATOR_NOT_AVAILABLE: true, pb.ErrorCode_NOT_COORDINATOR: true,
	pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS: true, pb.ErrorCode_STALE_MEMBER_EPOCH: true,
}

// The group errors (codes 47-60), for errors.Is: errors.Is(err,
// ErrFencedMemberEpoch) matches any *Error with that code, whatever its
// message.
var (
	// ErrCoordinatorNotAvailable: the group's coordinator is not available
	// yet (its offsets partition has no leader). Retriable.
	ErrCoordinatorNotAvailable = &Error{Code: pb.ErrorCode_COORDINATOR_NOT_AVAILABLE, Retriable: true}
	// ErrNotCoordinator: the broker asked is not the group's coordinator
	// (any more). Retriable after FindCoordinator.
	ErrNotCoordinator = &Error{Code: pb.ErrorCode_NOT_COORDINATOR, Retriable: true}
	// ErrCoordinatorLoadInProgress: the coordinator is loading the group's
	// state. Retriable.
	ErrCoordinatorLoadInProgress = &Error{Code: pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS, Retriable: true}
	// ErrGroupIDNotFound: no such group.
	ErrGroupIDNotFound = &Error{Code: pb.ErrorCode_GROUP_ID_NOT_FOUND}
	// ErrInvalidGroupID: the group id is empty, too long, or has control
	// characters.
	ErrInvalidGroupID = &Error{Code: pb.ErrorCode_INVALID_GROUP_ID}
	// ErrUnknownMemberID: the member is not (or no longer) in the group; its
	// partitions are lost and it joins again.
	ErrUnknownMemberID = &Error{Code: pb.ErrorCode_UNKNOWN_MEMBER_ID}
	// ErrFencedMemberEpoch: the member's epoch is not its current one; its
	// partitions are lost and it joins again.
	ErrFencedMemberEpoch = &Error{Code: pb.ErrorCode_FENCED_MEMBER_EPOCH}
	// ErrStaleMemberEpoch: a commit carried an old member epoch. Retriable
	// after a heartbeat.
	ErrStaleMemberEpoch = &Error{Code: pb.ErrorCode_STALE_MEMBER_EPOCH, Retriable: true}
	// ErrPartitionNotOwned: a commit named a partition the member does not own.
	ErrPartitionNotOwned = &Error{Code: pb.ErrorCode_PARTITION_NOT_OWNED}
	// ErrNonEmptyGroup: the operation needs a group without members.
	ErrNonEmptyGroup = &Error{Code: pb.ErrorCode_NON_EMPTY_GROUP}
	// ErrUnsupportedAssignor: the coordinator has no assignor of that name.
	ErrUnsupportedAssignor = &Error{Code: pb.ErrorCode_UNSUPPORTED_ASSIGNOR}
	// ErrInvalidRegularExpression: the subscription's regular expression
	// does not compile.
	ErrInvalidRegularExpression = &Error{Code: pb.ErrorCode_INVALID_REGULAR_EXPRESSION}
	// ErrGroupMaxSizeReached: the group already has group.max.size members.
	ErrGroupMaxSizeReached = &Error{Code: pb.ErrorCode_GROUP_MAX_SIZE_REACHED}
	// ErrOffsetMetadataTooLarge: a commit's metadata string is too long.
	ErrOffsetMetadataTooLarge = &Error{Code: pb.ErrorCode_OFFSET_METADATA_TOO_LARGE}
)

// coordinatorError reports whether err says the group's coordinator must be
// found again (moved, not there yet, loading, or unreachable).
func coordinatorError(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case pb.ErrorCode_NOT_COORDINATOR, pb.ErrorCode_COORDINATOR_NOT_AVAILABLE, pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS,
		pb.ErrorCode_BROKER_NOT_AVAILABLE, pb.ErrorCode_REQUEST_TIMED_OUT:
		return true
	}
	return false
}

// Retriable reports whether retrying after a metadata refresh can help.
func Retriable(code pb.ErrorCode) bool { return retriableCodes[code] }

// codeError is the error of a per-item result code.
func codeError(code pb.ErrorCode, msg string) error {
	if code == pb.ErrorCode_NONE {
		return nil
	}
	return &Error{Code: code, Message: msg, Retriable: Retriable(code)}
}

// FromError turns an RPC error into an *Error (context errors and nil pass
// through unchanged).
func FromError(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: err.Error()}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*pb.ErrorInfo); ok {
			return &Error{Code: info.Code, Message: info.Message, Retriable: Retriable(info.Code) || info.Retriable, leaderAddr: info.LeaderAddress}
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Message: st.Message(), Retriable: true}
	case codes.DeadlineExceeded:
		return &Error{Code: pb.ErrorCode_REQUEST_TIMED_OUT, Message: st.Message(), Retriable: true}
	case codes.Canceled:
		return context.Canceled
	case codes.InvalidArgument:
		return &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: st.Message()}
	}
	return &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: st.Message()}
}
