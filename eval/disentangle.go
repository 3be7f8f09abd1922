package eval

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PairPredictor returns, for the examples of task t (0 or 1), the classes
// that two weight combinations predict, θ₀ + a[0]·τ₁ + a[1]·τ₂ and
// θ₀ + b[0]·τ₁ + b[1]·τ₂, in the same example order.
type PairPredictor func(t int, a, b [2]float64) (predA, predB []int, err error)

// Disentanglement is the weight disentanglement error of two task vectors
// over a grid of coefficients (Ortiz-Jimenez, Favero and Frossard, "Task
// Arithmetic in the Tangent Space", NeurIPS 2023, section 5):
//
//	ξ(α₁, α₂) = Σ_{t=1,2} E_{x∈D_t}[ 1(argmax f(x; θ₀ + α_t τ_t) ≠ argmax f(x; θ₀ + α₁τ₁ + α₂τ₂)) ]
//
// Each term is a disagreement rate in [0, 1], so ξ lies in [0, 2]; it is 0
// where adding the other task's vector changes no prediction on a task's
// data. On the axis α₂ = 0 the first term vanishes (the two models are the
// same), on α₁ = 0 the second; ξ(0, 0) = 0.
type Disentanglement struct {
	Tasks [2]string `json:"tasks"`
	// Examples is the number of examples of each task.
	Examples [2]int `json:"examples"`
	// Alpha1 and Alpha2 are the grids of α₁ and α₂.
	Alpha1 []float64 `json:"alpha1"`
	Alpha2 []float64 `json:"alpha2"`
	// Xi[i][j] is ξ(Alpha1[i], Alpha2[j]); Terms[t][i][j] its term of task
	// t (a disagreement rate).
	Xi    [][]float64    `json:"xi"`
	Terms [2][][]float64 `json:"terms"`
}

// At returns ξ at grid point (i, j).
func (d *Disentanglement) At(i, j int) float64 { return d.Xi[i][j] }

// Box returns the mean and the maximum of ξ over the grid points in
// [0, 1]², where task addition searches its coefficients (0, 0 when none
// is).
func (d *Disentanglement) Box() (mean, most float64) {
	n := 0
	for i, a1 := range d.Alpha1 {
		for j, a2 := range d.Alpha2 {
			if a1 >= 0 && a1 <= 1 && a2 >= 0 && a2 <= 1 {
				mean += d.Xi[i][j]
				most = max(most, d.Xi[i][j])
				n++
			}
		}
	}
	if n > 0 {
		mean /= float64(n)
	}
	return mean, most
}

// Disentangle computes ξ over the grid alpha1 × alpha2, one call of predict
// per task and grid point (each evaluating both models of the term).
// progress, when set, is called after each grid point.
func Disentangle(tasks [2]string, alpha1, alpha2 []float64, predict PairPredictor, progress func(done, total int)) (*Disentanglement, error) {
	if len(alpha1) == 0 || len(alpha2) == 0 {
		return nil, errors.New("eval: the coefficient grid is empty")
	}
	d := &Disentanglement{Tasks: tasks, Alpha1: alpha1, Alpha2: alpha2, Xi: grid(len(alpha1), len(alpha2))}
	d.Terms[0], d.Terms[1] = grid(len(alpha1), len(alpha2)), grid(len(alpha1), len(alpha2))
	total := len(alpha1) * len(alpha2)
	for i, a1 := range alpha1 {
		for j, a2 := range alpha2 {
			both := [2]float64{a1, a2}
			singles := [2][2]float64{{a1, 0}, {0, a2}}
			for t := range 2 {
				pa, pb, err := predict(t, singles[t], both)
				if err != nil {
					return nil, fmt.Errorf("disentanglement of %s at α = (%g, %g): %w", tasks[t], a1, a2, err)
				}
				if len(pa) != len(pb) || len(pa) == 0 {
					return nil, fmt.Errorf("disentanglement of %s: %d and %d predictions", tasks[t], len(pa), len(pb))
				}
				if d.Examples[t] == 0 {
					d.Examples[t] = len(pa)
				} else if d.Examples[t] != len(pa) {
					return nil, fmt.Errorf("disentanglement of %s: %d predictions, earlier %d", tasks[t], len(pa), d.Examples[t])
				}
				differ := 0
				for k := range pa {
					if pa[k] != pb[k] {
						differ++
					}
				}
				d.Terms[t][i][j] = float64(differ) / float64(len(pa))
			}
			d.Xi[i][j] = d.Terms[0][i][j] + d.Terms[1][i][j]
			if progress != nil {
				progress(i*len(alpha2)+j+1, total)
			}
		}
	}
	return d, nil
}

func grid(r, c int) [][]float64 {
	g := make([][]float64, r)
	for i := range g {
		g[i] = make([]float64, c)
	}
	return g
}

// xiGrid presents ξ to gonum's heat map: columns along α₁, rows along α₂.
type xiGrid struct{ d *Disentanglement }

func (g xiGrid) Dims() (c, r int)   { return len(g.d.Alpha1), len(g.d.Alpha2) }
func (g xiGrid) Z(c, r int) float64 { return g.d.Xi[c][r] }
func (g xiGrid) X(c int) float64    { return g.d.Alpha1[c] }
func (g xiGrid) Y(r int) float64    { return g.d.Alpha2[r] }
func (g xiGrid) Min() float64       { return 0 }
func (g xiGrid) Max() float64       { return 2 }

// PlotDisentanglement draws ξ as a PNG heat map, as the paper's figures
// do: α₁ across, α₂ up, a colour bar of ξ ∈ [0, 2] beside it, and the
// [0, 1]² box where task arithmetic searches its coefficients outlined.
func PlotDisentanglement(d *Disentanglement, title string) ([]byte, error) {
	if len(d.Alpha1) < 2 || len(d.Alpha2) < 2 {
		return nil, errors.New("eval: a heat map needs at least 2 coefficients on each axis")
	}
	cmap := moreland.SmoothBlueRed()
	cmap.SetMin(0)
	cmap.SetMax(2)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = fmt.Sprintf("α₁ (%s)", d.Tasks[0])
	p.Y.Label.Text = fmt.Sprintf("α₂ (%s)", d.Tasks[1])
	p.Add(plotter.NewHeatMap(xiGrid{d}, cmap.Palette(255)))
	box, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 0}, {X: 1, Y: 1}, {X: 0, Y: 1}, {X: 0, Y: 0}})
	if err != nil {
		return nil, err
	}
	box.Width = vg.Points(2)
	box.Color = color.Black
	p.Add(box)
	// Cells are centred on the grid points: the axes reach half a step out.
	half := func(v []float64) float64 { return math.Abs(v[1]-v[0]) / 2 }
	p.X.Min, p.X.Max = d.Alpha1[0]-half(d.Alpha1), d.Alpha1[len(d.Alpha1)-1]+half(d.Alpha1)
	p.Y.Min, p.Y.Max = d.Alpha2[0]-half(d.Alpha2), d.Alpha2[len(d.Alpha2)-1]+half(d.Alpha2)

	bar := plot.New()
	bar.Title.Text = "ξ"
	bar.HideX()
	bar.Y.Padding = 0
	bar.Add(&plotter.ColorBar{ColorMap: cmap, Vertical: true})

	const width, height = 7 * vg.Inch, 6 * vg.Inch
	c := vgimg.New(width, height)
	dc := draw.New(c)
	split := width * 0.84
	p.Draw(draw.Crop(dc, 0, split-width, 0, 0))
	bar.Draw(draw.Crop(dc, split+vg.Points(6), -vg.Points(18), vg.Points(36), -vg.Points(24)))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("rendering PNG: %w", err)
	}
	return buf.Bytes(), nil
}
