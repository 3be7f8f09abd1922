package cpukernels

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"

	"github.com/editkit/editkit/internal/simd"
)

// dotGeneralParams are a DotGeneral's axes and sizes, as simplego
// normalizes it: the output is [batch, lhsCross, rhsCross], row-major.
// Contracting and batch axes pair up in the order given; cross axes keep
// their order in the operand.
type dotGeneralParams struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
	batch, lhsCross, rhsCross, contracting             int
}

// operand is a row-major input: its dimensions and flat data ([]float32 or
// []bfloat16.BFloat16).
type operand struct {
	dims []int
	flat any
}

// dotGeneral computes the normalized product into out ([]float32 or
// []bfloat16.BFloat16, the operands' dtype). bfloat16 products accumulate
// in float32 and are rounded to nearest even once, at the end.
func dotGeneral(p dotGeneralParams, lhs, rhs operand, out any, workers int) error {
	a, err := view(lhs, p.lhsContracting, p.lhsBatch, p.batch, p.lhsCross, p.contracting)
	if err != nil {
		return fmt.Errorf("DotGeneral lhs: %w", err)
	}
	b, err := view(rhs, p.rhsContracting, p.rhsBatch, p.batch, p.rhsCross, p.contracting)
	if err != nil {
		return fmt.Errorf("DotGeneral rhs: %w", err)
	}
	n := p.batch * p.lhsCross * p.rhsCross
	switch o := out.(type) {
	case []float32:
		simd.MatMul(o[:n], a, b, p.batch, p.lhsCross, p.rhsCross, p.contracting, workers)
	case []bfloat16.BFloat16:
		tmp := f32Pool.Get().(*[]float32)
		defer f32Pool.Put(tmp)
		if cap(*tmp) < n {
			*tmp = make([]float32, n)
		}
		acc := (*tmp)[:n]
		simd.MatMul(acc, a, b, p.batch, p.lhsCross, p.rhsCross, p.contracting, workers)
		simd.EncodeBF16(bf16Bits(o[:n]), acc)
	default:
		return fmt.Errorf("output of type %T", out)
	}
	return nil
}

var f32Pool = sync.Pool{New: func() any { return new([]float32) }}

func bf16Bits(x []bfloat16.BFloat16) []uint16 {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&x[0])), len(x))
}

// view describes an operand as a simd.Matrix of batch matrices
// cross×contracting. Batch axes become per-matrix offsets; the cross and
// the contracting axes each need a single stride, so when either spans axes
// that are not adjacent in memory the operand is first copied into
// [batch, cross, contracting] order.
func view(x operand, contracting, batch []int, nb, cross, k int) (simd.Matrix, error) {
	dims := x.dims
	strides := make([]int, len(dims))
	s := 1
	for i := len(dims) - 1; i >= 0; i-- {
		strides[i] = s
		s *= dims[i]
	}
	var crossAxes []int
	for a := range dims {
		if !slices.Contains(contracting, a) && !slices.Contains(batch, a) {
			crossAxes = append(crossAxes, a)
		}
	}
	var m simd.Matrix
	rs, okR := collapse(dims, strides, crossAxes)
	ks, okK := collapse(dims, strides, contracting)
	offsets := groupOffsets(dims, strides, batch)
	if len(offsets) != nb {
		return m, fmt.Errorf("batch axes %v of %v hold %d matrices, want %d", batch, dims, len(offsets), nb)
	}
	switch f := x.flat.(type) {
	case []float32:
		if !okR || !okK {
			f = normalize(f, dims, strides, batch, crossAxes, contracting)
			rs, ks, offsets = k, 1, stepOffsets(nb, cross*k)
		}
		m.F32 = f
	case []bfloat16.BFloat16:
		u := bf16Bits(f)
		if !okR || !okK {
			u = normalize(u, dims, strides, batch, crossAxes, contracting)
			rs, ks, offsets = k, 1, stepOffsets(nb, cross*k)
		}
		m.BF16 = u
	default:
		return m, fmt.Errorf("data of type %T", x.flat)
	}
	m.RowStride, m.KStride = rs, ks
	if nb > 1 || offsets[0] != 0 {
		m.Offsets = offsets
	}
	return m, nil
}

// collapse returns the single stride of the flat index over axes (the
// first most significant), or false when the axes do not form one run in
// memory. Axes of size 1 do not matter.
func collapse(dims, strides, axes []int) (int, bool) {
	stride, prev := 1, -1
	for _, a := range axes {
		if dims[a] == 1 {
			continue
		}
		if prev >= 0 && strides[prev] != strides[a]*dims[a] {
			return 0, false
		}
		prev, stride = a, strides[a]
	}
	return stride, true
}

// groupOffsets lists the memory offset of every value of the flat index
// over axes (the first most significant).
func groupOffsets(dims, strides, axes []int) []int {
	out := []int{0}
	for _, a := range axes {
		next := make([]int, 0, len(out)*dims[a])
		for _, o := range out {
			for i := range dims[a] {
				next = append(next, o+i*strides[a])
			}
		}
		out = next
	}
	return out
}

func stepOffsets(n, step int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i * step
	}
	return out
}

// normalize copies x into [batch, cross, contracting] order.
func normalize[T any](x []T, dims, strides, batch, cross, contracting []int) []T {
	ob := groupOffsets(dims, strides, batch)
	oc := groupOffsets(dims, strides, cross)
	ok := groupOffsets(dims, strides, contracting)
	out := make([]T, 0, len(ob)*len(oc)*len(ok))
	for _, b := range ob {
		for _, c := range oc {
			for _, k := range ok {
				out = append(out, x[b+c+k])
			}
		}
	}
	return out
}
