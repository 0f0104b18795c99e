package main

import (
	"fmt"
	"io"
	"strings"
)

var sectionTitles = map[string]string{
	"throughput": "Throughput at full speed (higher is better)",
	"latency":    "Produce latency (send -> ack) at a fixed rate both sustain (lower is better)",
	"e2e":        "End-to-end latency (send -> consumed) at that rate (lower is better)",
	"consume":    "Consume (replay from the start of a full log; higher is better)",
	"scaling":    "Strata alone: throughput against partitions and record size",
}

var sectionOrder = []string{"throughput", "latency", "e2e", "consume", "scaling"}

// writeMarkdown writes one table per section, rows in CSV order.
func writeMarkdown(w io.Writer, rows []row) error {
	var b strings.Builder
	for _, sec := range sectionOrder {
		var rs []row
		for _, r := range rows {
			if r.section == sec {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s\n\n", sectionTitles[sec])
		if sec == "scaling" {
			b.WriteString("| RF | durability | record size | producers | partitions | metric | Strata |\n|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.rf, r.durability, r.size, r.producers, r.partitions, r.metric, num(r.strata))
			}
			continue
		}
		rate, rateSep := "", ""
		if sec == "latency" || sec == "e2e" {
			rate, rateSep = " rate (records/s) |", "---|"
		}
		fmt.Fprintf(&b, "| RF | durability | record size | producers | partitions / streams |%s metric | Strata | JetStream | Strata / JetStream |\n|---|---|---|---|---|%s---|---|---|---|\n", rate, rateSep)
		for _, r := range rs {
			ratio := "-"
			if r.hasJS && r.jetstream > 0 {
				ratio = fmt.Sprintf("%.2f", r.strata/r.jetstream)
			}
			js := "-"
			if r.hasJS {
				js = num(r.jetstream)
			}
			rate := ""
			if sec == "latency" || sec == "e2e" {
				rate = " " + r.rate + " |"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |%s %s | %s | %s | %s |\n", r.rf, r.durability, r.size, r.producers, r.partitions, rate, r.metric, num(r.strata), js, ratio)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// num prints a figure with sensible precision and thousands separators.
func num(v float64) string {
	switch {
	case v >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var out []byte
		for i := range len(s) {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		return string(out)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
