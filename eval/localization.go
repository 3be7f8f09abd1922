package eval

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Localization says how the leading eigenvectors of a kernel on a pooled
// sample of several tasks share their energy among the tasks, the
// eigenfunction-localization analysis of Ortiz-Jimenez, Favero and
// Frossard ("Task Arithmetic in the Tangent Space", NeurIPS 2023, section
// 6): weight disentanglement goes with eigenfunctions of the NTK that each
// live on one task's inputs. For the k-th eigenvector v_k (unit norm) of
// the N×N kernel matrix,
//
//	Share[k][t] = Σ_{i ∈ D_t} v_k[i]²
//
// the fraction of its energy on task t's examples: near 1 on one task when
// the eigenfunction is localized there, n_t/N on each when it is spread
// evenly over a sample of n_t examples per task.
type Localization struct {
	Tasks []string `json:"tasks"`
	// Examples is the number of examples of each task in the sample.
	Examples []int `json:"examples"`
	// Eigenvalues are the top eigenvalues, largest first, and Share[k] the
	// energy shares of the k-th one's eigenvector, by task.
	Eigenvalues []float64   `json:"eigenvalues"`
	Share       [][]float64 `json:"share"`
	// Localized is the mean over the top eigenvectors of their largest
	// share; Even is what it would be for eigenvectors spread evenly
	// (max_t n_t/N), its floor.
	Localized float64 `json:"localized"`
	Even      float64 `json:"even"`
}

// Localize eigendecomposes a symmetric kernel matrix on a pooled sample
// (n×n, row-major; task[i] is the index in names of example i's task) and
// returns the energy shares of its top eigenvectors (at most n).
func Localize(kernel []float64, task []int, names []string, top int) (*Localization, error) {
	n := len(task)
	switch {
	case n == 0 || len(kernel) != n*n:
		return nil, fmt.Errorf("eval: a kernel of %d values on %d examples: want n×n", len(kernel), n)
	case top <= 0:
		return nil, errors.New("eval: localization of no eigenvector")
	}
	l := &Localization{Tasks: names, Examples: make([]int, len(names))}
	for _, t := range task {
		if t < 0 || t >= len(names) {
			return nil, fmt.Errorf("eval: task index %d out of %d tasks", t, len(names))
		}
		l.Examples[t]++
	}
	sym := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			v := (kernel[i*n+j] + kernel[j*n+i]) / 2 // tolerate rounding asymmetry
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("eval: kernel entry (%d, %d) is not finite", i, j)
			}
			sym.SetSym(i, j, v)
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, errors.New("eval: the kernel's eigendecomposition did not converge")
	}
	values := eig.Values(nil) // ascending
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	for k := n - 1; k >= max(0, n-top); k-- {
		share := make([]float64, len(names))
		for i := range n {
			v := vecs.At(i, k)
			share[task[i]] += v * v
		}
		l.Eigenvalues = append(l.Eigenvalues, values[k])
		l.Share = append(l.Share, share)
		most := 0.0
		for _, s := range share {
			most = max(most, s)
		}
		l.Localized += most
	}
	l.Localized /= float64(len(l.Share))
	for _, c := range l.Examples {
		l.Even = max(l.Even, float64(c)/float64(n))
	}
	return l, nil
}

// PlotLocalization draws a Localization as a PNG: one stacked bar per top
// eigenvector, largest eigenvalue first, split into each task's share of
// its energy.
func PlotLocalization(l *Localization, title string) ([]byte, error) {
	if len(l.Share) == 0 {
		return nil, errors.New("eval: no eigenvector to plot")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "eigenvector (largest eigenvalue first)"
	p.Y.Label.Text = "share of its energy on each task's examples"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = true
	width := vg.Points(12)
	var below *plotter.BarChart
	for t, name := range l.Tasks {
		vals := make(plotter.Values, len(l.Share))
		for k, s := range l.Share {
			vals[k] = s[t]
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, fmt.Errorf("plotting %s: %w", name, err)
		}
		bars.Color = PlotColor(t)
		bars.LineStyle.Width = 0
		if below != nil {
			bars.StackOn(below)
		}
		below = bars
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	names := make([]string, len(l.Share))
	for k := range names {
		names[k] = fmt.Sprint(k + 1)
	}
	p.NominalX(names...)
	return RenderPNG(p, 7*vg.Inch, 4*vg.Inch)
}
