package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// deletions is what a delete command (topics, groups) reports: the names it
// deleted, and the first failure, which sets the exit code once the others
// are done. JSON: {"deleted":["NAME",...]}.
type deletions struct {
	Deleted  []string `json:"deleted"`
	kind     string
	firstErr error
}

func newDeletions(kind string) *deletions { return &deletions{Deleted: []string{}, kind: kind} }

// add records one name's outcome.
func (d *deletions) add(name string, err error) {
	if err == nil {
		d.Deleted = append(d.Deleted, name)
		return
	}
	if d.firstErr == nil {
		d.firstErr = clusterError(fmt.Sprintf("delete %s %q", d.kind, name), err)
	}
}

// print writes the deleted names and answers the first failure.
func (d *deletions) print(g *globalOptions, w io.Writer) error {
	if err := g.print(w, d, func(tw *tabwriter.Writer) {
		for _, n := range d.Deleted {
			fmt.Fprintf(tw, "Deleted %s %s.\n", d.kind, n)
		}
	}); err != nil {
		return err
	}
	return d.firstErr
}
