package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	strataColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	jsColor     = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// drawChart draws two panels, one above the other: MB/s of every
// throughput and consume row, and p99 ms of every latency and e2e row;
// Strata and JetStream side by side (horizontal bars).
func drawChart(path string, rows []row) error {
	var tput, lat []row
	for _, r := range rows {
		switch {
		case (r.section == "throughput" || r.section == "consume") && r.metric == "MB/s" && r.hasJS:
			tput = append(tput, r)
		case (r.section == "latency" || r.section == "e2e") && r.metric == "p99 ms" && r.hasJS:
			lat = append(lat, r)
		}
	}
	if len(tput) == 0 && len(lat) == 0 {
		return fmt.Errorf("no throughput (MB/s) or latency (p99 ms) rows with both systems to draw")
	}
	top, err := pairs("Throughput, MB/s (consume rows: replay)", "MB/s", tput, func(r row) string {
		if r.section == "consume" {
			return fmt.Sprintf("replay RF%s %s %s, %s partitions", r.rf, r.durability, r.size, r.partitions)
		}
		return r.label()
	})
	if err != nil {
		return err
	}
	bottom, err := pairs("Latency p99 at a fixed rate, ms (produce->ack; e2e: produce->consumed)", "ms", lat, func(r row) string {
		if r.section == "e2e" {
			return "e2e " + r.label()
		}
		return "ack " + r.label()
	})
	if err != nil {
		return err
	}
	h := vg.Length(len(tput)+len(lat))*0.3*vg.Inch + 2.5*vg.Inch
	w := 9 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	// Share the height by the number of rows each panel has.
	frac := float64(len(tput)+2) / float64(len(tput)+len(lat)+4)
	cut := dc.Min.Y + vg.Length(1-frac)*(dc.Max.Y-dc.Min.Y)
	upper := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: dc.Min.X, Y: cut}, Max: dc.Max}}
	lower := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: dc.Min, Max: vg.Point{X: dc.Max.X, Y: cut}}}
	top.Draw(upper)
	bottom.Draw(lower)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}

// pairs is one panel: a Strata bar and a JetStream bar per row.
func pairs(title, unit string, rs []row, label func(row) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = unit
	p.Legend.Top = true
	if len(rs) == 0 {
		return p, nil
	}
	// NominalY counts from the bottom: reverse, so the first row is on top.
	var s, j plotter.Values
	names := make([]string, len(rs))
	top := 0.0
	for i := range rs {
		r := rs[len(rs)-1-i]
		s = append(s, r.strata)
		j = append(j, r.jetstream)
		names[i] = label(r)
		top = max(top, r.strata, r.jetstream)
	}
	width := vg.Points(7)
	bs, err := plotter.NewBarChart(s, width)
	if err != nil {
		return nil, err
	}
	bj, err := plotter.NewBarChart(j, width)
	if err != nil {
		return nil, err
	}
	bs.Horizontal, bj.Horizontal = true, true
	bs.Color, bj.Color = strataColor, jsColor
	bs.LineStyle.Width, bj.LineStyle.Width = 0, 0
	bs.Offset, bj.Offset = width/2, -width/2
	p.Add(bs, bj)
	p.Legend.Add("Strata", bs)
	p.Legend.Add("NATS JetStream", bj)
	p.NominalY(names...)
	p.X.Min = 0
	p.X.Max = top * 1.3 // room for the legend
	return p, nil
}
