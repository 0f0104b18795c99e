// Package integration will hold multi-process cluster tests, fault injection
// and the end-to-end checker (DESIGN.md §2). It is built by the fault-suite
// issue; until then it holds no code.
package integration
