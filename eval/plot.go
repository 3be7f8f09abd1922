package eval

import (
	"bytes"
	"fmt"
	"image/color"
	"maps"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PlotSearch draws a search as a PNG: each task's validation accuracy (%)
// against the coefficient, and a dashed line at the chosen one.
func PlotSearch(s *Search, title, xLabel string) ([]byte, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = "validation accuracy (%)"
	p.Legend.Top = true
	var tasks []string
	if len(s.Points) > 0 {
		tasks = slices.Sorted(maps.Keys(s.Points[0].Accuracy))
	}
	for i, task := range tasks {
		xy := make(plotter.XYs, len(s.Points))
		for k, pt := range s.Points {
			xy[k].X, xy[k].Y = pt.Coef, 100*pt.Accuracy[task]
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("plotting %s: %w", task, err)
		}
		c := PlotColor(i)
		line.Color, points.Color = c, c
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(task, line, points)
	}
	if len(s.Points) > 0 {
		chosen := s.Chosen()
		lo, hi := p.Y.Min, p.Y.Max
		mark, err := plotter.NewLine(plotter.XYs{{X: chosen, Y: lo}, {X: chosen, Y: hi}})
		if err != nil {
			return nil, err
		}
		mark.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		mark.Color = color.Gray{Y: 90}
		p.Add(mark)
		p.Legend.Add(fmt.Sprintf("chosen %g", chosen), mark)
	}
	return RenderPNG(p, 7*vg.Inch, 4.5*vg.Inch)
}

// RenderPNG draws a plot as a PNG of the given size.
func RenderPNG(p *plot.Plot, width, height vg.Length) ([]byte, error) {
	c := vgimg.New(width, height)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("rendering PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// PlotColor is the i-th color of a palette that stays readable for a dozen
// series.
func PlotColor(i int) color.Color {
	palette := []color.RGBA{
		{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
		{188, 189, 34, 255}, {23, 190, 207, 255},
	}
	return palette[i%len(palette)]
}
