package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream
throughput,1,lazy,1KiB,1,1,,MB/s,200,100
throughput,3,fsync,100B,4,4,,records/s,12345.6,0
latency,1,lazy,1KiB,1,1,5000,p99 ms,2,4
e2e,1,lazy,1KiB,1,1,5000,p99 ms,3,3
consume,1,lazy,1KiB,1,4,,MB/s,300,150
scaling,1,lazy,1KiB,4,512,,MB/s,90,
`

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMarkdownAndChart(t *testing.T) {
	rows, err := readCSV(writeFile(t, "r.csv", sample))
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := writeMarkdown(&md, rows); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{
		"| 1 | lazy | 1KiB | 1 | 1 | MB/s | 200 | 100 | 2.00 |",
		"| 3 | fsync | 100B | 4 | 4 | records/s | 12,346 | 0.00 | - |", // no ratio against zero
		"| 1 | lazy | 1KiB | 1 | 1 | 5000 | p99 ms | 2.00 | 4.00 | 0.50 |",
		"| 1 | lazy | 1KiB | 4 | 512 | MB/s | 90.0 |",
		"#### Consume",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "Throughput at full speed") > strings.Index(out, "Produce latency") {
		t.Error("sections out of order")
	}

	pngPath := filepath.Join(t.TempDir(), "c.png")
	if err := drawChart(pngPath, rows); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Errorf("chart is %v", b)
	}
}

func TestBadCSV(t *testing.T) {
	for name, body := range map[string]string{
		"header":  "section,rf\nthroughput,1\n",
		"column":  strings.Replace(sample, "metric", "unit", 1),
		"number":  "section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream\nthroughput,1,lazy,1KiB,1,1,,MB/s,fast,1\n",
		"js":      "section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream\nthroughput,1,lazy,1KiB,1,1,,MB/s,1,slow\n",
		"nothing": "section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream\n",
	} {
		rows, err := readCSV(writeFile(t, name+".csv", body))
		if name == "nothing" {
			if err != nil || len(rows) != 0 {
				t.Errorf("%s: %v %v", name, rows, err)
			}
			if err := drawChart(filepath.Join(t.TempDir(), "x.png"), rows); err == nil {
				t.Error("a chart of no rows should be an error")
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
