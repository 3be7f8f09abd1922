package simd

import (
	"math"
	"sync"
	"unsafe"
)

// Matrix is a batch of m×k (or n×k) matrices read through strides, in
// float32 or bfloat16: element (b, i, p) is at Offsets[b] + i·RowStride +
// p·KStride of F32 or of BF16 (bfloat16 bit patterns; one of the two is set).
type Matrix struct {
	F32  []float32
	BF16 []uint16
	// Offsets[b] is where matrix b starts; nil means one matrix at 0.
	Offsets            []int
	RowStride, KStride int
}

func (x Matrix) offset(b int) int {
	if x.Offsets == nil {
		return 0
	}
	return x.Offsets[b]
}

// MatMul sets c[(b·m + i)·n + j] = Σ_p a(b, i, p)·b(b, j, p) for every
// batch entry b < batch, i < m, j < n, p < k: the product of a and bᵀ, the
// normalized form of a DotGeneral. It accumulates in float32 with fused
// multiply-adds (in the pure-Go kernel, separate products and sums) over
// blocks of the k axis; bfloat16 inputs are widened exactly to float32 as
// they are packed. It runs on up to workers goroutines (at least one).
func MatMul(c []float32, a, b Matrix, batch, m, n, k, workers int) {
	matMul(kernelFor(level), c, a, b, batch, m, n, k, workers)
}

// Blocking of the k, m and n axes (Goto and van de Geijn's layered
// algorithm): a kc×nr panel of b stays in L1 while the micro-kernel runs
// down an mc×kc block of a that stays in L2; kc×nc of b lives in L3.
const (
	blockK = 256
	blockM = 192 // a multiple of every kernel's mr
	blockN = 2048
)

// serialFlops is the size below which MatMul does not start goroutines.
const serialFlops = 1 << 18

// microKernel computes an mr×nr tile: c (+)= Σ_p a[p][0:mr] ⊗ b[p][0:nr]
// over kc packed steps, c with row stride ldc (in elements).
type microKernel struct {
	mr, nr int
	fn     func(kc int, a, b, c *float32, ldc int, accumulate bool)
	level  Level // of the packing routines
}

func kernelFor(l Level) microKernel {
	switch l {
	case AVX512:
		return microKernel{mr: 12, nr: 32, fn: gemm12x32AVX512, level: l}
	case AVX2:
		return microKernel{mr: 6, nr: 16, fn: gemm6x16AVX2, level: l}
	}
	return microKernel{mr: 4, nr: 4, fn: gemm4x4Go}
}

// gemm4x4Go is the pure-Go micro-kernel.
func gemm4x4Go(kc int, a, b, c *float32, ldc int, accumulate bool) {
	as := unsafe.Slice(a, 4*kc)
	bs := unsafe.Slice(b, 4*kc)
	var s [4][4]float32
	for p := 0; p < kc; p++ {
		ap, bp := as[4*p:4*p+4], bs[4*p:4*p+4]
		for i, av := range ap {
			s[i][0] += av * bp[0]
			s[i][1] += av * bp[1]
			s[i][2] += av * bp[2]
			s[i][3] += av * bp[3]
		}
	}
	cs := unsafe.Slice(c, 3*ldc+4)
	for i := range 4 {
		row := cs[i*ldc : i*ldc+4]
		for j := range row {
			if accumulate {
				row[j] += s[i][j]
			} else {
				row[j] = s[i][j]
			}
		}
	}
}

// gemmBuffers are one MatMul's packing buffers: a block of b shared by the
// workers and a block of a per worker.
type gemmBuffers struct {
	b []float32
	a [][]float32
}

var bufferPool = sync.Pool{New: func() any { return &gemmBuffers{} }}

// size makes the buffers large enough for an m×n×k product.
func (g *gemmBuffers) size(kern microKernel, workers, m, n, k int) {
	kb := min(k, blockK)
	nb := kb * roundUp(min(n, blockN), kern.nr)
	if cap(g.b) < nb {
		g.b = make([]float32, nb)
	}
	g.b = g.b[:nb]
	na := kb * roundUp(min(m, blockM), kern.mr)
	for len(g.a) < workers {
		g.a = append(g.a, nil)
	}
	for w := range workers {
		if cap(g.a[w]) < na {
			g.a[w] = make([]float32, na)
		}
		g.a[w] = g.a[w][:na]
	}
}

func matMul(kern microKernel, c []float32, a, b Matrix, batch, m, n, k, workers int) {
	if batch <= 0 || m <= 0 || n <= 0 {
		return
	}
	c = c[:batch*m*n]
	if k <= 0 {
		clear(c)
		return
	}
	if float64(batch)*float64(m)*float64(n)*float64(k) < serialFlops/2 {
		workers = 1
	}
	workers = max(workers, 1)
	bufs := bufferPool.Get().(*gemmBuffers)
	defer bufferPool.Put(bufs)
	// Many small products (attention heads): one batch range per worker.
	if workers > 1 && batch >= workers && (batch >= 4*workers || m < 2*blockM) {
		bufs.size(kern, 1, m, n, k)
		per := make([]*gemmBuffers, workers)
		per[0] = bufs
		for w := 1; w < workers; w++ {
			per[w] = bufferPool.Get().(*gemmBuffers)
			per[w].size(kern, 1, m, n, k)
			defer bufferPool.Put(per[w])
		}
		parallel(workers, func(w int) {
			for bi := w * batch / workers; bi < (w+1)*batch/workers; bi++ {
				gemm(kern, c[bi*m*n:(bi+1)*m*n], a, b, bi, m, n, k, 1, per[w])
			}
		})
		return
	}
	bufs.size(kern, workers, m, n, k)
	for bi := range batch {
		gemm(kern, c[bi*m*n:(bi+1)*m*n], a, b, bi, m, n, k, workers, bufs)
	}
}

// gemm computes batch entry bi into c (m×n, row-major).
func gemm(kern microKernel, c []float32, a, b Matrix, bi, m, n, k, workers int, bufs *gemmBuffers) {
	mr, nr := kern.mr, kern.nr
	aOff, bOff := a.offset(bi), b.offset(bi)
	// Row blocks of a: as many as needed for the L2 bound, rounded up to a
	// multiple of workers so that they share the work evenly.
	mBlocks := ceilDiv(m, blockM)
	mBlocks = ceilDiv(mBlocks, workers) * workers
	mc := roundUp(ceilDiv(m, mBlocks), mr)
	mBlocks = ceilDiv(m, mc)
	for jc := 0; jc < n; jc += blockN {
		nb := min(blockN, n-jc)
		panels := ceilDiv(nb, nr)
		// With fewer row blocks than workers, split the panels of b too.
		nChunks := 1
		if mBlocks < workers {
			nChunks = min(panels, ceilDiv(workers, mBlocks))
		}
		units := mBlocks * nChunks
		for pc := 0; pc < k; pc += blockK {
			kb := min(blockK, k-pc)
			accumulate := pc > 0
			team := min(workers, panels)
			parallel(team, func(w int) {
				for p := w; p < panels; p += team {
					pack(kern.level, bufs.b[p*kb*nr:(p+1)*kb*nr], b, bOff, jc+p*nr, min(nr, nb-p*nr), pc, kb, nr)
				}
			})
			team = min(workers, units)
			parallel(team, func(w int) {
				ap := bufs.a[w]
				packed := -1
				var tile [32 * 32]float32
				for u := w; u < units; u += team {
					blk, chunk := u/nChunks, u%nChunks
					i0 := blk * mc
					mb := min(mc, m-i0)
					if packed != blk {
						for ir := 0; ir < mb; ir += mr {
							pack(kern.level, ap[ir*kb:(ir+mr)*kb], a, aOff, i0+ir, min(mr, mb-ir), pc, kb, mr)
						}
						packed = blk
					}
					for p := chunk * panels / nChunks; p < (chunk+1)*panels/nChunks; p++ {
						bp := &bufs.b[p*kb*nr]
						j0 := jc + p*nr
						cols := min(nr, nb-p*nr)
						for ir := 0; ir < mb; ir += mr {
							rows := min(mr, mb-ir)
							cp := (i0+ir)*n + j0
							if rows == mr && cols == nr {
								kern.fn(kb, &ap[ir*kb], bp, &c[cp], n, accumulate)
								continue
							}
							kern.fn(kb, &ap[ir*kb], bp, &tile[0], nr, false)
							for i := range rows {
								dst := c[cp+i*n : cp+i*n+cols]
								src := tile[i*nr : i*nr+cols]
								if accumulate {
									for j, v := range src {
										dst[j] += v
									}
								} else {
									copy(dst, src)
								}
							}
						}
					}
				}
			})
		}
	}
}

// pack writes rows [r0, r0+rows) and steps [p0, p0+kb) of x (batch
// offset off) into dst as one panel [kb][w], padding rows up to w with
// zeros.
func pack(l Level, dst []float32, x Matrix, off, r0, rows, p0, kb, w int) {
	dst = dst[:kb*w]
	if rows < w {
		clear(dst)
	}
	rs, ks := x.RowStride, x.KStride
	base := off + r0*rs + p0*ks
	if x.F32 != nil {
		src := x.F32
		switch {
		case rs == 1:
			for p := range kb {
				copy(dst[p*w:p*w+rows], src[base+p*ks:base+p*ks+rows])
			}
		case ks == 1:
			packRowsF32(l, dst, src[base:], rs, rows, kb, w)
		default:
			for i := range rows {
				for p := range kb {
					dst[p*w+i] = src[base+i*rs+p*ks]
				}
			}
		}
		return
	}
	src := x.BF16
	switch {
	case rs == 1:
		for p := range kb {
			row := src[base+p*ks : base+p*ks+rows]
			d := dst[p*w : p*w+rows]
			for i, h := range row {
				d[i] = math.Float32frombits(uint32(h) << 16)
			}
		}
	case ks == 1:
		for i := range rows {
			row := src[base+i*rs : base+i*rs+kb]
			for p, h := range row {
				dst[p*w+i] = math.Float32frombits(uint32(h) << 16)
			}
		}
	default:
		for i := range rows {
			for p := range kb {
				dst[p*w+i] = math.Float32frombits(uint32(src[base+i*rs+p*ks]) << 16)
			}
		}
	}
}

// packRowsF32 transposes rows of kb contiguous values (row stride rs) into
// a panel [kb][w]: 8×8 blocks in registers with AVX2, the rest four rows at
// a time so that the writes are sequential.
func packRowsF32(l Level, dst, src []float32, rs, rows, kb, w int) {
	i := 0
	if k8 := kb &^ 7; l >= AVX2 && k8 > 0 {
		for ; i+8 <= rows; i += 8 {
			_ = src[(i+7)*rs+k8-1] // in bounds
			packRows8AVX2(&dst[i], &src[i*rs], rs, k8, w)
			for p := k8; p < kb; p++ {
				for r := i; r < i+8; r++ {
					dst[p*w+r] = src[r*rs+p]
				}
			}
		}
	}
	for ; i+4 <= rows; i += 4 {
		r0 := src[i*rs : i*rs+kb]
		r1 := src[(i+1)*rs : (i+1)*rs+kb]
		r2 := src[(i+2)*rs : (i+2)*rs+kb]
		r3 := src[(i+3)*rs : (i+3)*rs+kb]
		d := dst[i:]
		for p := range kb {
			q := d[p*w : p*w+4]
			q[0], q[1], q[2], q[3] = r0[p], r1[p], r2[p], r3[p]
		}
	}
	for ; i < rows; i++ {
		row := src[i*rs : i*rs+kb]
		for p, v := range row {
			dst[p*w+i] = v
		}
	}
}

// parallel runs fn(0), ..., fn(n−1) on n goroutines (the caller's among
// them) and waits for all.
func parallel(n int, fn func(w int)) {
	if n <= 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	wg.Add(n - 1)
	for w := 1; w < n; w++ {
		go func() {
			defer wg.Done()
			fn(w)
		}()
	}
	fn(0)
	wg.Wait()
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }
