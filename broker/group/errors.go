package group

import "errors"

// Errors of the coordinator. The broker maps each to its Strata error code
// (proto ErrorCode of the same name); every one leaves the group unchanged.
var (
	ErrNotCoordinator          = errors.New("group: this broker is not the group's coordinator")
	ErrLoadInProgress          = errors.New("group: the coordinator is loading the group's state")
	ErrGroupNotFound           = errors.New("group: no such group")
	ErrInvalidGroupID          = errors.New("group: invalid group id")
	ErrUnknownMember           = errors.New("group: unknown member id")
	ErrFencedMemberEpoch       = errors.New("group: fenced member epoch")
	ErrStaleMemberEpoch        = errors.New("group: stale member epoch")
	ErrPartitionNotOwned       = errors.New("group: partition not owned by the member")
	ErrNonEmptyGroup           = errors.New("group: not empty")
	ErrUnsupportedAssignor     = errors.New("group: unsupported assignor")
	ErrInvalidRegex            = errors.New("group: invalid subscription regular expression")
	ErrGroupMaxSize            = errors.New("group: group.max.size reached")
	ErrOffsetMetadataTooLarge  = errors.New("group: offset metadata too large")
	ErrInvalidRequest          = errors.New("group: invalid request")
	ErrCoordinatorNotAvailable = errors.New("group: coordinator not available")
	ErrUnknownPartition        = errors.New("group: unknown topic or partition")
)
