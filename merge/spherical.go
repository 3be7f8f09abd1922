package merge

import (
	"fmt"
	"math"

	"github.com/editkit/editkit/tasks"
)

// Spherical merges of whole tensors, as mergekit defines them. Norms, dot
// products and angles are computed in float64.

// mergeNuSLERP is mergekit's nuslerp: SLERP between two models at
// t = w_2/(w_1 + w_2) (0.5 when |w_1 + w_2| < 1e-6); with a base, between
// their task vectors, added back to the base. Vectors are the whole tensor
// (nuslerp_flatten, the default), its rows (the last axis), or with
// nuslerp_row_wise its columns (axis 0); nearly colinear vectors
// (|sin θ| < 1e-8) are interpolated linearly. Each vector is normalised
// by max(‖v‖, 1e-7) to find the angle.
func mergeNuSLERP(p *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	t := 0.5
	if s := tp.wf[0] + tp.wf[1]; math.Abs(s) >= 1e-6 {
		t = tp.wf[1] / s
	}
	v0, v1 := c.Models[0], c.Models[1]
	withBase := !p.cfg.BaseIsLayout
	if withBase {
		v0, v1 = c.Taus[0], c.Taus[1]
	}
	shape := c.Tensor.Shape
	axis := -1
	switch {
	case tp.flatten:
		shape = []int64{int64(len(dst))}
	case tp.rowWise:
		axis = 0
	}
	vectors(shape, axis, func(off, stride, n int) {
		var d00, d11, d01 float64
		for i := range n {
			a, b := float64(v0[off+i*stride]), float64(v1[off+i*stride])
			d00 += a * a
			d11 += b * b
			d01 += a * b
		}
		n0, n1 := math.Max(math.Sqrt(d00), 1e-7), math.Max(math.Sqrt(d11), 1e-7)
		theta := math.Acos(math.Max(-1, math.Min(1, d01/(n0*n1))))
		sin := math.Sin(theta)
		s0, s1 := 1-t, t
		if math.Abs(sin) >= 1e-8 {
			s0, s1 = math.Sin((1-t)*theta)/sin, math.Sin(t*theta)/sin
		}
		for i := range n {
			k := off + i*stride
			dst[k] = float32(s0*float64(v0[k]) + s1*float64(v1[k]))
		}
	})
	if withBase {
		for i, b := range c.Base {
			dst[i] += b
		}
	}
	return nil
}

// mergeKarcher is mergekit's karcher: the Riemannian (Karcher) mean of the
// models' directions on the unit sphere with equal weights, found by at
// most max_iter fixed-point steps from the normalised mean direction and
// stopping when the tangent step's norm falls below tol, scaled by the
// mean of the models' norms. Models with norm ≤ tol take no part in the
// direction (their norm still counts in the scale).
func mergeKarcher(_ *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	models := c.Models
	n := len(models)
	if n == 1 {
		copy(dst, models[0])
		return nil
	}
	alpha := 1 / float64(n)
	norms := make([]float64, n)
	var valid [][]float32
	for i, m := range models {
		norms[i] = math.Sqrt(dot(m, m))
		if norms[i] > tp.tol {
			valid = append(valid, m)
		}
	}
	var scale float64
	for _, nm := range norms {
		scale += alpha * nm
	}
	if len(valid) == 0 {
		clear(dst)
		return nil
	}
	// Unit vectors are held in float32 (as mergekit holds them in the
	// input dtype), so memory stays a few tensors; dot products, norms and
	// the iterate u are float64.
	size := len(dst)
	units := make([][]float32, len(valid))
	for i, m := range valid {
		inv := 1 / math.Sqrt(dot(m, m))
		units[i] = make([]float32, size)
		for k, v := range m {
			units[i][k] = float32(float64(v) * inv)
		}
	}
	a := 1 / float64(len(valid)) // the weights renormalised over the valid models
	u := make([]float64, size)
	for _, ui := range units {
		for k, v := range ui {
			u[k] += a * float64(v)
		}
	}
	if nu := norm64(u); nu < tp.tol {
		for k, v := range units[0] {
			u[k] = float64(v)
		}
	} else {
		scaleVec(u, 1/nu)
	}
	step := make([]float64, size)
	for range tp.maxIter {
		clear(step)
		for _, ui := range units {
			var c float64
			for k, v := range ui {
				c += u[k] * float64(v)
			}
			cos := math.Max(-1, math.Min(1, c))
			theta := math.Acos(cos)
			if theta < tp.tol {
				continue
			}
			f := a * theta / math.Sin(theta)
			for k, v := range ui {
				step[k] += f * (float64(v) - cos*u[k])
			}
		}
		ns := norm64(step)
		if ns < tp.tol {
			break
		}
		cs, sn := math.Cos(ns), math.Sin(ns)
		for k := range u {
			u[k] = cs*u[k] + sn*step[k]/ns
		}
		if nu := norm64(u); nu > tp.tol {
			scaleVec(u, 1/nu)
		}
	}
	for k, v := range u {
		dst[k] = float32(scale * v)
	}
	return nil
}

// mergeMultiSLERP is mergekit's multislerp: barycentric interpolation on
// the sphere of the (base-relative, with a base) models. Each is projected
// to the unit sphere (divided by ‖v‖ + eps), the weighted mean direction m
// is normalised, the projections' tangent components at m are averaged
// with the weights, mapped back with the exponential map and scaled by the
// weighted mean norm. Weights are divided by their sum unless
// normalize_weights is false. A zero mean direction falls back to linear
// interpolation for two models and is an error for more.
func mergeMultiSLERP(p *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	n := len(c.Models)
	vs := c.Models
	withBase := !p.cfg.BaseIsLayout
	if n == 1 {
		copy(dst, vs[0])
		return nil
	}
	if withBase {
		vs = c.Taus
	}
	w := append([]float64(nil), tp.wf...)
	if tp.normWeight {
		var s float64
		for _, x := range w {
			s += x
		}
		for i := range w {
			w[i] /= s
		}
	}
	size := len(dst)
	norms := make([]float64, n)
	mean := make([]float64, size)
	for i, v := range vs {
		norms[i] = math.Sqrt(dot(v, v))
		f := w[i] / (norms[i] + tp.eps)
		for k, x := range v {
			mean[k] += f * float64(x)
		}
	}
	mn := norm64(mean)
	if mn < tp.eps {
		if n != 2 {
			return fmt.Errorf("multislerp: tensor %q: the weighted mean of the models' directions is zero (antipodal models whose weights balance out): choose other weights", c.Tensor.Name)
		}
		for k := range dst {
			dst[k] = float32(float64(vs[0][k])*w[0] + float64(vs[1][k])*w[1])
		}
	} else {
		scaleVec(mean, 1/mn)
		tangent := make([]float64, size)
		for i, v := range vs {
			inv := 1 / (norms[i] + tp.eps)
			var d float64
			for k, x := range v {
				d += float64(x) * inv * mean[k]
			}
			for k, x := range v {
				tangent[k] += w[i] * (float64(x)*inv - d*mean[k])
			}
		}
		tn := norm64(tangent) + tp.eps
		var avg float64
		for i := range n {
			avg += norms[i] * w[i]
		}
		cs, sn := math.Cos(tn), math.Sin(tn)/tn
		for k := range dst {
			dst[k] = float32((mean[k]*cs + tangent[k]*sn) * avg)
		}
	}
	if withBase {
		for k, b := range c.Base {
			dst[k] += b
		}
	}
	return nil
}

func norm64(a []float64) float64 {
	var s float64
	for _, v := range a {
		s += v * v
	}
	return math.Sqrt(s)
}

func scaleVec(a []float64, f float64) {
	for i := range a {
		a[i] *= f
	}
}
