package cpukernels

import "github.com/editkit/editkit/internal/simd"

// binaryOp is an elementwise float32 operation with implicit broadcasting.
type binaryOp struct {
	name string
	// vv sets dst[i] = a[i] op b[i]; vs dst[i] = a[i] op s; sv dst[i] = s op b[i].
	vv func(dst, a, b []float32)
	vs func(dst, a []float32, s float32)
	sv func(dst []float32, s float32, b []float32)
}

var (
	addOp = binaryOp{"Add", simd.Add, simd.AddScalar, func(d []float32, s float32, b []float32) { simd.AddScalar(d, b, s) }}
	subOp = binaryOp{"Sub", simd.Sub, simd.SubScalar, simd.ScalarSub}
	mulOp = binaryOp{"Mul", simd.Mul, simd.MulScalar, func(d []float32, s float32, b []float32) { simd.MulScalar(d, b, s) }}
	divOp = binaryOp{"Div", simd.Div, simd.DivScalar, simd.ScalarDiv}
)

// broadcastShape is the shape of a binary op's result: operands of size 1
// broadcast to the other's shape, else the ranks match and each axis is the
// larger of the two (the other being 1). ok is false otherwise.
func broadcastShape(a, b []int) ([]int, bool) {
	switch {
	case size(b) == 1 && len(a) >= len(b):
		return a, true
	case size(a) == 1 && len(b) >= len(a):
		return b, true
	case len(a) != len(b):
		return nil, false
	}
	out := make([]int, len(a))
	for i := range a {
		switch {
		case a[i] == b[i] || b[i] == 1:
			out[i] = a[i]
		case a[i] == 1:
			out[i] = b[i]
		default:
			return nil, false
		}
	}
	return out, true
}

func size(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// loop is a run of axes merged into one, with the operands' strides along
// it (0 where an operand is broadcast).
type loop struct{ n, sa, sb int }

// loops merges the output's axes into as few loops as possible: adjacent
// axes merge when each operand is broadcast along both or along neither.
// The last loop is the innermost.
func loops(a, b, out []int) []loop {
	if size(a) == 1 && len(a) != len(out) {
		a = ones(len(out))
	}
	if size(b) == 1 && len(b) != len(out) {
		b = ones(len(out))
	}
	var ls []loop
	sa, sb := 1, 1
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == 1 {
			continue
		}
		ba, bb := a[i] == 1, b[i] == 1
		stride := func(s int, broadcast bool) int {
			if broadcast {
				return 0
			}
			return s
		}
		if n := len(ls); n > 0 {
			last := &ls[n-1]
			if (last.sa == 0) == ba && (last.sb == 0) == bb {
				// Same pattern: strides continue the run (a stride of 0
				// stays 0).
				last.n *= out[i]
				if !ba {
					sa *= a[i]
				}
				if !bb {
					sb *= b[i]
				}
				continue
			}
		}
		ls = append(ls, loop{n: out[i], sa: stride(sa, ba), sb: stride(sb, bb)})
		if !ba {
			sa *= a[i]
		}
		if !bb {
			sb *= b[i]
		}
	}
	// Innermost last.
	for i, j := 0, len(ls)-1; i < j; i, j = i+1, j-1 {
		ls[i], ls[j] = ls[j], ls[i]
	}
	return ls
}

func ones(n int) []int {
	o := make([]int, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

// binary computes out = a op b with broadcasting (dims as broadcastShape
// accepts them), splitting large outputs over workers.
func binary(op binaryOp, out, a, b []float32, aDims, bDims, outDims []int, workers int) {
	ls := loops(aDims, bDims, outDims)
	if len(ls) == 0 { // a single element
		op.vv(out[:1], a[:1], b[:1])
		return
	}
	inner := ls[len(ls)-1]
	outer := ls[:len(ls)-1]
	rows := size(outDims) / inner.n
	row := func(ao, bo, oo int) {
		dst := out[oo : oo+inner.n]
		switch {
		case inner.sa != 0 && inner.sb != 0:
			op.vv(dst, a[ao:ao+inner.n], b[bo:bo+inner.n])
		case inner.sa != 0:
			op.vs(dst, a[ao:ao+inner.n], b[bo])
		case inner.sb != 0:
			op.sv(dst, a[ao], b[bo:bo+inner.n])
		default:
			op.vv(dst[:1], a[ao:ao+1], b[bo:bo+1])
			for i := range dst {
				dst[i] = dst[0]
			}
		}
	}
	offsets := func(r int) (int, int) {
		var ao, bo int
		for i := len(outer) - 1; i >= 0; i-- {
			l := outer[i]
			k := r % l.n
			r /= l.n
			ao += k * l.sa
			bo += k * l.sb
		}
		return ao, bo
	}
	parallelRows(rows, inner.n, workers, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			ao, bo := offsets(r)
			row(ao, bo, r*inner.n)
		}
	})
}

// unary computes out = fn(in) over chunks split across workers.
func unary(fn func(dst, src []float32), out, in []float32, workers int) {
	const chunk = 1 << 12
	parallelRows(ceilDiv(len(in), chunk), chunk, workers, func(c0, c1 int) {
		lo, hi := c0*chunk, min(c1*chunk, len(in))
		fn(out[lo:hi], in[lo:hi])
	})
}

// minParallel is the number of elements below which elementwise work stays
// on one goroutine.
const minParallel = 1 << 15

// parallelRows calls fn on ranges of rows [r0, r1) of rowLen elements,
// spread over workers when there is enough work.
func parallelRows(rows, rowLen, workers int, fn func(r0, r1 int)) {
	if workers <= 1 || rows*rowLen < minParallel || rows < 2 {
		fn(0, rows)
		return
	}
	workers = min(workers, rows)
	done := make(chan struct{}, workers-1)
	for w := 1; w < workers; w++ {
		go func() {
			fn(w*rows/workers, (w+1)*rows/workers)
			done <- struct{}{}
		}()
	}
	fn(0, rows/workers)
	for w := 1; w < workers; w++ {
		<-done
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
