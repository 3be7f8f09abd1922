package main

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/memoir"
)

// plotOverlaps draws MEMOIR's overlaps after T edits as densities over the
// overlap |M_q ∧ M_i|/k, against chance: a rephrasing's overlap with its own
// edit's mask against the chance overlap of two random masks, a locality
// prompt's best overlap over the T stored masks against the chance best of
// T, with the two thresholds.
func plotOverlaps(o *memoir.Overlaps, rec *overlapRecord) ([]byte, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("MEMOIR mask overlaps after %d edits (D = %d, k = %d)", o.Stored, o.Features, o.TopK)
	p.X.Label.Text = "overlap: features in both masks / k"
	p.Y.Label.Text = "density"
	p.Legend.Top = true
	p.X.Min, p.X.Max = 0, 1
	k := float64(o.TopK)
	bins := int(math.Round(1 / 0.02))
	series := []struct {
		name string
		xs   []float64
	}{
		{"rephrasing vs its edit's mask", o.Rephrase},
		{"locality prompt, best of the stored masks", o.Locality},
	}
	for i, s := range series {
		if len(s.xs) == 0 {
			continue
		}
		h, err := plotter.NewHist(plotter.Values(s.xs), bins)
		if err != nil {
			return nil, err
		}
		h.Normalize(1)
		c := eval.PlotColor(i)
		h.FillColor = withAlpha(c, 110)
		h.LineStyle.Color = c
		p.Add(h)
		p.Legend.Add(fmt.Sprintf("%s (%d)", s.name, len(s.xs)), h)
	}
	chance := []struct {
		name string
		pmf  []float64
	}{
		{"chance: two random masks", memoir.OverlapPMF(o.Features, o.TopK)},
		{fmt.Sprintf("chance: best of %d random masks", o.Stored), memoir.BestOverlapPMF(o.Features, o.TopK, o.Stored)},
	}
	for i, c := range chance {
		var xy plotter.XYs
		for cnt, v := range c.pmf {
			if v > 1e-6 {
				xy = append(xy, plotter.XY{X: float64(cnt) / k, Y: v * k})
			}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = eval.PlotColor(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(c.name, l)
	}
	for i, t := range []struct {
		name string
		tau  float64
	}{{"τ = 0.4", 0.4}, {fmt.Sprintf("τ auto = %.3f", rec.AutoTau), rec.AutoTau}} {
		l, err := plotter.NewLine(plotter.XYs{{X: t.tau, Y: 0}, {X: t.tau, Y: p.Y.Max}})
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = color.Gray{Y: uint8(40 + 60*i)}
		p.Add(l)
		p.Legend.Add(t.name, l)
	}
	return eval.RenderPNG(p, 8*vg.Inch, 4.5*vg.Inch)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), a}
}

// plotMetrics draws reliability, generalization and locality against the
// number of sequential edits T (log scale), one line per variant.
func plotMetrics(variants []*variant) ([]byte, error) {
	names := []string{"reliability", "generalization", "locality"}
	var plots [][]*plot.Plot
	row := make([]*plot.Plot, len(names))
	for mi, metric := range names {
		p := plot.New()
		p.Title.Text = metric
		p.X.Label.Text = "sequential edits T"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1.02
		p.Legend.Top = false
		p.Legend.Left = true
		for vi, v := range variants {
			var xy plotter.XYs
			for _, r := range v.Results {
				y := [3]float64{r.Reliability, r.Generalization, r.Locality}[mi]
				xy = append(xy, plotter.XY{X: float64(r.Edits), Y: y})
			}
			l, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			c := eval.PlotColor(vi)
			l.Color, pts.Color = c, c
			pts.Shape = draw.CircleGlyph{}
			p.Add(l, pts)
			if mi == 0 {
				p.Legend.Add(v.Name, l, pts)
			}
		}
		row[mi] = p
	}
	plots = append(plots, row)
	const w, h = 12 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(names), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for j := range names {
		plots[0][j].Draw(canvases[0][j])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("rendering PNG: %w", err)
	}
	return buf.Bytes(), nil
}
