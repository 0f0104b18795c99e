// Command chart turns the results CSV of scripts/bench/compare.sh into a
// PNG (throughput and latency, Strata against NATS JetStream, one bar pair
// per row) and a Markdown table with the ratio Strata / JetStream per row.
//
//	chart -csv results.csv -png chart.png -md table.md
//
// The CSV has a header and these columns:
//
//	section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream
//
// section is throughput, latency (produce -> ack at a fixed rate), e2e
// (produce -> consumed at that rate), consume (replay of a full log) or
// scaling (Strata only: jetstream is empty). rate is the fixed rate in
// records/s of latency and e2e rows (empty otherwise). metric names the unit:
// "records/s", "MB/s", "p50 ms", "p99 ms" or "p99.9 ms".
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

// row is one line of the CSV.
type row struct {
	section, rf, durability, size, producers, partitions, rate, metric string
	strata, jetstream                                                  float64
	hasJS                                                              bool
}

func (r row) label() string {
	return fmt.Sprintf("RF%s %s %s x%s", r.rf, r.durability, r.size, r.producers)
}

func main() {
	in := flag.String("csv", "", "results CSV (required)")
	png := flag.String("png", "", "PNG to write")
	md := flag.String("md", "", "Markdown table to write (- for stdout)")
	flag.Parse()
	if *in == "" || (*png == "" && *md == "") {
		fmt.Fprintln(os.Stderr, "chart: -csv and at least one of -png, -md are required")
		os.Exit(2)
	}
	rows, err := readCSV(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
	if *md != "" {
		w := os.Stdout
		if *md != "-" {
			f, err := os.Create(*md)
			if err != nil {
				fmt.Fprintln(os.Stderr, "chart:", err)
				os.Exit(1)
			}
			defer f.Close()
			w = f
		}
		if err := writeMarkdown(w, rows); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
	}
	if *png != "" {
		if err := drawChart(*png, rows); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
	}
}

var header = []string{"section", "rf", "durability", "size", "producers", "partitions", "rate", "metric", "strata", "jetstream"}

func readCSV(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd := csv.NewReader(f)
	rd.FieldsPerRecord = len(header)
	head, err := rd.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	for i, h := range header {
		if head[i] != h {
			return nil, fmt.Errorf("%s: column %d is %q, want %q", path, i+1, head[i], h)
		}
	}
	var rows []row
	for line := 2; ; line++ {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r := row{section: rec[0], rf: rec[1], durability: rec[2], size: rec[3], producers: rec[4], partitions: rec[5], rate: rec[6], metric: rec[7]}
		if r.strata, err = strconv.ParseFloat(rec[8], 64); err != nil {
			return nil, fmt.Errorf("%s:%d: strata %q: %w", path, line, rec[8], err)
		}
		if rec[9] != "" {
			if r.jetstream, err = strconv.ParseFloat(rec[9], 64); err != nil {
				return nil, fmt.Errorf("%s:%d: jetstream %q: %w", path, line, rec[9], err)
			}
			r.hasJS = true
		}
		rows = append(rows, r)
	}
}
