package bench

import (
	"fmt"
	"image/color"
	"io"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colMet    = color.RGBA{R: 0x2e, G: 0x8b, B: 0x57, A: 0xff}
	colMissed = color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}
	colMayfly = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colDocker = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colTarget = color.Black
)

// WriteChart draws the results as one PNG: each scenario's ratio beside its
// target, and, when the latency scenario ran, both latency distributions.
func WriteChart(w io.Writer, r *Results) error {
	plots := []*plot.Plot{}
	ratios, err := ratioPlot(r.Targets())
	if err != nil {
		return err
	}
	if ratios != nil {
		plots = append(plots, ratios)
	}
	if r.Latency != nil {
		lat, err := latencyPlot(r.Latency)
		if err != nil {
			return err
		}
		plots = append(plots, lat)
		parts, err := phasePlot(r.Latency)
		if err != nil {
			return err
		}
		plots = append(plots, parts)
	}
	if len(plots) == 0 {
		return fmt.Errorf("draw chart: no scenario results")
	}
	// Two charts a row, so that each stays readable at page width.
	cols := min(len(plots), 2)
	rows := (len(plots) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range plots {
		grid[i/cols][i%cols] = p
	}
	const tileW, tileH = 6 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(tileW*vg.Length(cols), tileH*vg.Length(rows)), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i/cols][i%cols])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write chart PNG: %w", err)
	}
	return nil
}

// ratioPlot is one bar per target, green when met, red when missed, with
// the target drawn across it.
func ratioPlot(ts []Target) (*plot.Plot, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Mayfly vs baseline, same run (ratio; line = target)"
	p.Y.Label.Text = "ratio"
	p.Y.Min = 0
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = shortName(t)
		bar, err := plotter.NewBarChart(plotter.Values{t.Ratio}, vg.Points(38))
		if err != nil {
			return nil, fmt.Errorf("draw ratio bar %s: %w", t.Name, err)
		}
		bar.XMin = float64(i)
		bar.LineStyle.Width = 0
		bar.Color = colMet
		if !t.Met {
			bar.Color = colMissed
		}
		p.Add(bar)
		line, err := plotter.NewLine(plotter.XYs{{X: float64(i) - 0.35, Y: t.Bound}, {X: float64(i) + 0.35, Y: t.Bound}})
		if err != nil {
			return nil, fmt.Errorf("draw target of %s: %w", t.Name, err)
		}
		line.Color, line.Width = colTarget, vg.Points(2)
		p.Add(line)
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(i), Y: t.Ratio}},
			Labels: []string{fmt.Sprintf("%.2f", t.Ratio)}})
		if err != nil {
			return nil, fmt.Errorf("label ratio of %s: %w", t.Name, err)
		}
		for j := range lab.TextStyle {
			lab.TextStyle[j].XAlign = draw.XCenter
			lab.TextStyle[j].YAlign = draw.YBottom
		}
		p.Add(lab)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(ts))-0.4
	maxY := 0.0
	for _, t := range ts {
		maxY = max(maxY, t.Ratio, t.Bound)
	}
	p.Y.Max = maxY * 1.2
	return p, nil
}

func shortName(t Target) string {
	b := fmt.Sprintf("\n(target %s %g)", t.Op, t.Bound)
	switch {
	case strings.HasPrefix(t.Name, "queue only on PostgreSQL"):
		return "queue, PG" + b
	case strings.HasPrefix(t.Name, "two servers"):
		return "2 vs 1 servers, PG" + b
	}
	for _, prefix := range []string{"latency", "throughput", "queue"} {
		if strings.HasPrefix(t.Name, prefix) {
			return prefix + b
		}
	}
	if strings.HasPrefix(t.Name, "lease") {
		return "queue depth" + b
	}
	return t.Name
}

// latencyPlot is the distribution (CDF) of both latency samples.
func latencyPlot(l *LatencyResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Task latency, queue to complete (n=%d each)", l.N)
	p.X.Label.Text = "ms"
	p.Y.Label.Text = "fraction of tasks"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	for _, s := range []struct {
		name    string
		samples []float64
		col     color.Color
	}{
		{"Mayfly (HTTP API + runner + engine)", l.MayflySamples, colMayfly},
		{"docker run --rm", l.DockerSamples, colDocker},
	} {
		if len(s.samples) == 0 {
			continue
		}
		v := slices.Clone(s.samples)
		slices.Sort(v)
		xys := make(plotter.XYs, len(v))
		for i, x := range v {
			xys[i] = plotter.XY{X: x, Y: float64(i+1) / float64(len(v))}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("draw latency of %s: %w", s.name, err)
		}
		line.Color, line.Width = s.col, vg.Points(2)
		p.Add(line)
		p.Legend.Add(s.name, line)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// phasePlot stacks the medians of each path's parts: Mayfly's phases, the
// driver's calls alone, and docker run as one block. Medians of parts do
// not add up to the median of the whole exactly; they show proportions.
func phasePlot(l *LatencyResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Where the time goes (p50 of each part, ms)"
	p.Y.Label.Text = "ms"
	p.Legend.Top = true
	p.Legend.Left = true
	segments := []struct {
		name string
		v    [5]float64 // Mayfly, driver alone (mount, copy, none), docker run
		col  color.Color
	}{
		{"enqueue (POST)", [5]float64{l.Phases.Enqueue.P50, 0, 0, 0, 0}, color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}},
		{"to start: lease..container start / driver Start", [5]float64{l.Phases.ToStart.P50, l.Driver.Start.P50, l.DriverCopy.Start.P50, l.DriverBare.Start.P50, 0}, colMayfly},
		{"start to end: run, remove, finish / driver Wait+Destroy", [5]float64{l.Phases.Run.P50, l.Driver.Wait.P50 + l.Driver.Destroy.P50,
			l.DriverCopy.Wait.P50 + l.DriverCopy.Destroy.P50, l.DriverBare.Wait.P50 + l.DriverBare.Destroy.P50, 0},
			color.RGBA{R: 0x9e, G: 0xc9, B: 0xe2, A: 0xff}},
		{"end to observed (poll)", [5]float64{l.Phases.Observe.P50, 0, 0, 0, 0}, color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}},
		{"docker run --rm", [5]float64{0, 0, 0, 0, l.Docker.P50}, colDocker},
	}
	var below *plotter.BarChart
	for _, seg := range segments {
		bar, err := plotter.NewBarChart(plotter.Values(seg.v[:]), vg.Points(40))
		if err != nil {
			return nil, fmt.Errorf("draw phase %s: %w", seg.name, err)
		}
		bar.Color = seg.col
		bar.LineStyle.Width = 0
		if below != nil {
			bar.StackOn(below)
		}
		below = bar
		p.Add(bar)
		p.Legend.Add(seg.name, bar)
	}
	p.NominalX("Mayfly task", "driver,\nfiles mounted", "driver,\nfiles copied", "driver,\nno files", "docker run --rm")
	top := max(l.Phases.Enqueue.P50+l.Phases.ToStart.P50+l.Phases.Run.P50+l.Phases.Observe.P50,
		l.Driver.Total.P50, l.DriverCopy.Total.P50, l.Docker.P50)
	p.Y.Min, p.Y.Max = 0, top*1.6
	return p, nil
}
