// Package client will hold the Go client library: producer, consumer and admin
// (DESIGN.md §2). It is built by the client issue; until then it holds no code.
package client
