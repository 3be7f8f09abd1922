package cpukernels

// gather writes out (contiguous, dims) from in, where output axis i reads
// in at stride strides[i] (0 repeats a value: a broadcast). Axes that stay
// contiguous are merged, so the inner loop is a copy, a fill or one
// strided gather, not one index computation per element as in simplego.
func gather(out, in []float32, dims, strides []int, workers int) {
	var ds, ss []int // merged, innermost last
	for i, d := range dims {
		if d == 1 {
			continue
		}
		if n := len(ds); n > 0 && ss[n-1] == strides[i]*d {
			ds[n-1] *= d
			ss[n-1] = strides[i]
			continue
		}
		ds, ss = append(ds, d), append(ss, strides[i])
	}
	if len(ds) == 0 { // one element
		out[0] = in[0]
		return
	}
	n, s := ds[len(ds)-1], ss[len(ss)-1]
	ds, ss = ds[:len(ds)-1], ss[:len(ss)-1]
	rows := size(ds)
	parallelRows(rows, n, workers, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			off, rest := 0, r
			for i := len(ds) - 1; i >= 0; i-- {
				off += rest % ds[i] * ss[i]
				rest /= ds[i]
			}
			dst := out[r*n : (r+1)*n]
			switch s {
			case 1:
				copy(dst, in[off:off+n])
			case 0:
				v := in[off]
				for i := range dst {
					dst[i] = v
				}
			default:
				src := in[off : off+(n-1)*s+1]
				for i := range dst {
					dst[i] = src[i*s]
				}
			}
		}
	})
}

// transposeStrides are the input strides of a transpose's output axes:
// output axis i is input axis perm[i].
func transposeStrides(dims, perm []int) (outDims, strides []int) {
	in := rowMajorStrides(dims)
	outDims, strides = make([]int, len(perm)), make([]int, len(perm))
	for i, a := range perm {
		outDims[i], strides[i] = dims[a], in[a]
	}
	return outDims, strides
}

// broadcastStrides are the input strides of a BroadcastInDim's output axes:
// operand axis a becomes output axis axes[a] (stride 0 where the operand's
// dimension is 1 and the output's is not); other output axes repeat.
func broadcastStrides(dims, axes, outDims []int) []int {
	in := rowMajorStrides(dims)
	strides := make([]int, len(outDims))
	for a, o := range axes {
		if dims[a] == outDims[o] {
			strides[o] = in[a]
		}
	}
	return strides
}

func rowMajorStrides(dims []int) []int {
	s := make([]int, len(dims))
	st := 1
	for i := len(dims) - 1; i >= 0; i-- {
		s[i] = st
		st *= dims[i]
	}
	return s
}
