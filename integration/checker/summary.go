package checker

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
)

// Row is one scenario's line of the summary table.
type Row struct {
	Scenario string
	Faults   int
	Result   *Result
	Err      string // a failure outside the checker (setup, a node that died)
}

var summary struct {
	sync.Mutex
	rows []Row
}

// Record adds a row to the summary table that PrintSummary prints.
func Record(row Row) {
	summary.Lock()
	summary.rows = append(summary.rows, row)
	summary.Unlock()
}

// PrintSummary writes the table of every recorded scenario:
// scenario, faults injected, ops, acknowledged, lost, duplicates, result.
func PrintSummary(w io.Writer) {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFAULTS\tOPS\tACKNOWLEDGED\tLOST\tDUPLICATES\tREORDERED\tHW REGRESSIONS\tRESULT")
	for _, r := range summary.rows {
		res := r.Result
		if res == nil {
			res = &Result{}
		}
		verdict := "pass"
		switch {
		case r.Err != "":
			verdict = "FAIL: " + r.Err
		case !res.OK():
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Scenario, r.Faults, res.Ops, res.Acked,
			len(res.Lost), res.Duplicates, len(res.Reordered), len(res.HWRegressions), verdict)
	}
	tw.Flush()
}
