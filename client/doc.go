// Package client is Strata's Go client library: the shared Client (metadata
// cache, one gRPC connection per broker and controller, typed errors), the
// Producer, the Consumer and the Admin. Everything bootstraps from a list of
// brokers; admin requests go to the controller quorum whose addresses the
// brokers report.
//
// Errors: every failed request is an *Error carrying the Strata error code,
// whether a retry can help (Retriable), and a message that says what to do;
// context errors come back unchanged.
package client
