package controllertest

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isUnavailable: the node could not be reached (stopped, cut off).
func isUnavailable(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable
}
