package tasks

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/internal/simd"
)

// DefaultChunk is the number of elements per chunk: small enough that a
// worker's float32 buffers (base, members, output) stay in the L2 cache,
// which measured faster than 2^14 or 2^18 on the merge benchmark.
const DefaultChunk = 1 << 16

// sampleChunk is the chunk size of sampling passes: small, so a sample
// touches many places in every tensor.
const sampleChunk = 1 << 12

// Chunk is a run of consecutive elements of one float tensor, read from the
// base and every member.
type Chunk struct {
	// Seq numbers the chunks of a stream from 0 in order; reductions index
	// their partial results by it and combine them in order.
	Seq int
	// Tensor is the base's tensor; Index its position in Set.Floats.
	Tensor checkpoint.TensorInfo
	Index  int
	// Start is the flat offset of the chunk's first element in the tensor.
	Start int64
	// Weight is the number of the tensor's elements each element of the
	// chunk stands for: 1, except in sampling passes.
	Weight float64
	// Base holds θ_base, Taus[i] member i's τ, and, when asked for,
	// Models[i] member i's θ.
	Base   []float32
	Taus   [][]float32
	Models [][]float32
	// Out receives the result in WriteModel and WriteVector.
	Out []float32
}

// StreamOptions configure a pass over a Set.
type StreamOptions struct {
	// Whole makes every chunk a whole tensor, for computations that need
	// per-tensor statistics.
	Whole bool
	// Models fills Chunk.Models.
	Models bool
	// Workers run the function concurrently (default: GOMAXPROCS, at most 4).
	Workers int
	// ChunkElems is the chunk size in elements (default DefaultChunk).
	ChunkElems int64
	// Sample, when above 1, visits only a deterministic 1/Sample of the
	// data for estimates: every Sample-th chunk of sampleChunk elements of
	// each tensor (at least one chunk per tensor); Chunk.Weight scales each
	// visited element to the share of the tensor it stands for.
	Sample int
	// SkipFiniteCheck skips the NaN/Inf check, for passes after a first
	// one that checked the same data.
	SkipFiniteCheck bool
	// Progress, when set, is called from one goroutine with the number of
	// base bytes done and the total.
	Progress func(done, total int64)
}

// DefaultWorkers is the number of workers a stream uses when not told:
// one per CPU, at most 4 (beyond that the passes are bound by memory).
func DefaultWorkers() int { return min(runtime.GOMAXPROCS(0), 4) }

// ChunkFunc computes on one chunk; worker identifies the calling goroutine
// (0 ≤ worker < Workers) so callers can keep per-worker scratch space.
type ChunkFunc func(worker int, c *Chunk) error

// WriteOptions configure the checkpoints written by WriteModel and WriteVector.
type WriteOptions struct {
	checkpoint.WriteOptions
	// DType is the dtype of float tensors in the output; zero keeps the
	// base's dtype for models and uses F32 for task vectors.
	DType checkpoint.DType
	// SideFiles adds files (name → content) to a folder output; the base's
	// config and tokenizer files are copied for models.
	SideFiles map[string][]byte
}

type job struct {
	seq    int
	weight float64
	index  int
	start  int64
	n      int64
	out    []float32
	err    error
	done   chan struct{}
}

// Scan calls fn on every chunk of every float tensor.
func (s *Set) Scan(opts StreamOptions, fn ChunkFunc) error {
	return s.stream(opts, fn, nil)
}

// WriteModel writes a full model: fn fills Chunk.Out with θ for each chunk
// of each float tensor; other tensors are copied from the base.
func (s *Set) WriteModel(out string, wo WriteOptions, opts StreamOptions, fn ChunkFunc) error {
	specs := make([]checkpoint.TensorSpec, 0, len(s.Base.Tensors()))
	for _, t := range s.Base.Tensors() {
		dt := t.DType
		if checkpoint.IsFloat(dt) && wo.DType != 0 {
			dt = wo.DType
		}
		specs = append(specs, checkpoint.TensorSpec{Name: t.Name, DType: dt, Shape: t.Shape})
	}
	return s.write(out, specs, wo, opts, fn, true)
}

// WriteVector writes a task vector: fn fills Chunk.Out with τ for each chunk
// of each float tensor.
func (s *Set) WriteVector(out string, wo WriteOptions, opts StreamOptions, fn ChunkFunc) error {
	dt := wo.DType
	if dt == 0 {
		dt = checkpoint.F32
	}
	specs := make([]checkpoint.TensorSpec, 0, len(s.floats))
	for _, t := range s.floats {
		specs = append(specs, checkpoint.TensorSpec{Name: t.Name, DType: dt, Shape: t.Shape})
	}
	meta := map[string]string{KindKey: KindTaskVector, BaseKey: s.Base.Path, BaseSizeKey: fmt.Sprint(s.Base.Size())}
	for k, v := range wo.Metadata {
		meta[k] = v
	}
	wo.Metadata = meta
	return s.write(out, specs, wo, opts, fn, false)
}

func (s *Set) write(out string, specs []checkpoint.TensorSpec, wo WriteOptions, opts StreamOptions, fn ChunkFunc, model bool) error {
	wo.Inputs = append(append([]string(nil), wo.Inputs...), s.Inputs()...)
	if model {
		meta := map[string]string{KindKey: KindModel}
		for k, v := range wo.Metadata {
			meta[k] = v
		}
		wo.Metadata = meta
	}
	// Results the output cannot hold are refused by the writer, unless the
	// set lets non-finite values through.
	wo.AllowNonfinite = wo.AllowNonfinite || s.AllowNonfinite
	w, err := checkpoint.Create(out, specs, wo.WriteOptions)
	if err != nil {
		return err
	}
	defer w.Abort()
	for _, name := range slices.Sorted(maps.Keys(wo.SideFiles)) {
		if err := w.AddFile(name, wo.SideFiles[name]); err != nil {
			return err
		}
	}
	if model {
		if err := w.CopySideFiles(s.Base); err != nil {
			return err
		}
	}
	var raw []byte
	// copyThrough writes the non-float tensors that come before the next
	// float tensor, straight from the base.
	copyThrough := func(upTo string) error {
		for {
			spec, ok := w.Next()
			if !ok || spec.Name == upTo {
				return nil
			}
			if !model {
				return fmt.Errorf("internal: task vector writer expected %q, got %q", spec.Name, upTo)
			}
			if raw, err = s.Base.ReadRaw(spec.Name, raw); err != nil {
				return err
			}
			if err := w.Write(spec.Name, raw); err != nil {
				return err
			}
		}
	}
	sink := func(j *job) error {
		name := s.floats[j.index].Name
		if j.start == 0 {
			if err := copyThrough(name); err != nil {
				return err
			}
		}
		return w.WriteFloat32(name, j.out)
	}
	if err := s.stream(opts, fn, sink); err != nil {
		return err
	}
	if err := copyThrough(""); err != nil {
		return err
	}
	return w.Commit()
}

// stream runs fn over all chunks on worker goroutines and hands the
// finished chunks, in order, to sink (when not nil).
func (s *Set) stream(opts StreamOptions, fn ChunkFunc, sink func(*job) error) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers()
	}
	chunk := opts.ChunkElems
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	var total int64
	for _, t := range s.floats {
		total += t.Bytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Output buffers circulate through a pool sized so the producer can run
	// at most a few chunks ahead of the consumer.
	pool := make(chan []float32, workers+2)
	if sink != nil {
		for range workers + 2 {
			pool <- nil
		}
	}
	jobs := make(chan *job)
	queue := make(chan *job, workers)
	go func() {
		defer close(jobs)
		defer close(queue)
		seq := 0
		for i, t := range s.floats {
			n := t.NumElements()
			step := chunk
			if opts.Sample > 1 {
				step = min(step, sampleChunk)
			}
			if opts.Whole || n < step {
				step = max(n, 1)
			}
			chunks := (n + step - 1) / step
			weight := 1.0
			var visit func(c int64) bool
			if opts.Sample > 1 {
				// Every Sample-th chunk, starting at an offset that varies
				// with the tensor so that no position is always skipped.
				every := int64(opts.Sample)
				first := int64(i) % min(every, max(chunks, 1))
				visited := int64(0)
				for c := first; c < chunks; c += every {
					visited += min(step, n-c*step)
				}
				if visited > 0 {
					weight = float64(n) / float64(visited)
				}
				visit = func(c int64) bool { return c >= first && (c-first)%every == 0 }
			}
			for start := int64(0); start < n || (n == 0 && start == 0); start += step {
				if visit != nil && !visit(start/step) {
					continue
				}
				j := &job{seq: seq, weight: weight, index: i, start: start, n: min(step, n-start), done: make(chan struct{})}
				seq++
				if sink != nil {
					select {
					case j.out = <-pool:
					case <-ctx.Done():
						return
					}
				}
				select {
				case queue <- j:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- j:
				case <-ctx.Done():
					close(j.done)
					return
				}
				if n == 0 {
					break
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &chunkReader{set: s, models: opts.Models, out: sink != nil, check: !s.AllowNonfinite && !opts.SkipFiniteCheck}
			for j := range jobs {
				if ctx.Err() == nil {
					j.err = r.run(w, j, fn)
				}
				close(j.done)
			}
		}()
	}
	var firstErr error
	var done int64
	for j := range queue {
		<-j.done
		if firstErr == nil {
			firstErr = j.err
			if firstErr == nil && sink != nil {
				firstErr = sink(j)
			}
			if firstErr != nil {
				cancel()
			}
		}
		if sink != nil {
			pool <- j.out
		}
		t := s.floats[j.index]
		done += j.n * int64(t.DType.Size())
		if opts.Progress != nil && firstErr == nil {
			opts.Progress(done, total)
		}
	}
	cancel()
	wg.Wait()
	return firstErr
}

// chunkReader holds one worker's read buffers.
type chunkReader struct {
	set    *Set
	models bool
	out    bool
	check  bool
	raw    []byte
	theta  [][]float32 // fine-tuned members' θ, exposed as Models when asked for
	c      Chunk
}

func (r *chunkReader) run(worker int, j *job, fn ChunkFunc) error {
	s := r.set
	t := s.floats[j.index]
	c := &r.c
	c.Seq, c.Tensor, c.Index, c.Start, c.Weight = j.seq, t, j.index, j.start, j.weight
	var err error
	if c.Base, err = r.read(s.Base, t.Name, j, c.Base); err != nil {
		return err
	}
	m := len(s.Members)
	if len(c.Taus) != m {
		c.Taus = make([][]float32, m)
		c.Models = make([][]float32, m)
		r.theta = make([][]float32, m)
	}
	for i, mem := range s.Members {
		// A fine-tuned member is read into Models (its θ) and τ derived; a
		// stored task vector is read into Taus and θ derived when wanted.
		if s.stored[i] {
			if c.Taus[i], err = r.read(mem, t.Name, j, c.Taus[i]); err != nil {
				return err
			}
			if r.models {
				r.theta[i] = grow(r.theta[i], len(c.Base))
				simd.Add(r.theta[i], c.Base, c.Taus[i])
				c.Models[i] = r.theta[i]
			} else {
				c.Models[i] = nil // not derived: don't expose stale data
			}
			continue
		}
		c.Taus[i] = grow(c.Taus[i], len(c.Base))
		if info, _ := mem.Tensor(t.Name); info.DType == checkpoint.BF16 && !r.models {
			// The common case of bf16 checkpoints: τ straight from the raw
			// bytes, without materialising θ.
			if err := r.readDiff(mem, info, j, c.Base, c.Taus[i]); err != nil {
				return err
			}
			c.Models[i] = nil
			continue
		}
		if r.theta[i], err = r.read(mem, t.Name, j, r.theta[i]); err != nil {
			return err
		}
		simd.Sub(c.Taus[i], r.theta[i], c.Base)
		c.Models[i] = nil
		if r.models {
			c.Models[i] = r.theta[i]
		}
	}
	if r.out {
		j.out = grow(j.out, len(c.Base))
	}
	c.Out = j.out
	return fn(worker, c)
}

// read reads the job's range of a float tensor of ck into dst, checking
// for NaN and ±Inf while decoding unless the stream skips the check.
func (r *chunkReader) read(ck *checkpoint.Checkpoint, name string, j *job, dst []float32) ([]float32, error) {
	info, _ := ck.Tensor(name)
	if info.DType == checkpoint.F32 {
		out, raw, err := ck.ReadFloat32Range(name, j.start, j.n, r.raw, dst)
		r.raw = raw
		if err != nil {
			return nil, err
		}
		if r.check {
			return out, nonFinite(info, j.start, checkpoint.FirstNonFinite(out), out)
		}
		return out, nil
	}
	raw, info, err := ck.ReadRawRange(name, j.start, j.n, r.raw)
	if raw != nil {
		r.raw = raw
	}
	if err != nil {
		return nil, err
	}
	if !checkpoint.IsFloat(info.DType) {
		return nil, fmt.Errorf("%s: tensor %s has dtype %s where the base has a float tensor", info.File, checkpoint.QuoteName(name), info.DType)
	}
	if !r.check {
		return checkpoint.DecodeFloat32(info.DType, raw, dst)
	}
	out, bad, err := checkpoint.DecodeFloat32Finite(info.DType, raw, dst)
	if err != nil {
		return nil, err
	}
	return out, nonFinite(info, j.start, bad, out)
}

// readDiff reads the job's range of a bf16 tensor and stores it minus base
// into dst.
func (r *chunkReader) readDiff(ck *checkpoint.Checkpoint, info checkpoint.TensorInfo, j *job, base, dst []float32) error {
	raw, _, err := ck.ReadRawRange(info.Name, j.start, j.n, r.raw)
	if raw != nil {
		r.raw = raw
	}
	if err != nil {
		return err
	}
	bad := checkpoint.DecodeBF16Diff(raw, base, dst)
	if !r.check || bad < 0 {
		return nil
	}
	v, _ := checkpoint.DecodeFloat32(checkpoint.BF16, raw[2*bad:2*bad+2], nil)
	return nonFinite(info, j.start+int64(bad), 0, v[:1])
}

func nonFinite(t checkpoint.TensorInfo, start int64, bad int, data []float32) error {
	if bad < 0 {
		return nil
	}
	return fmt.Errorf("%s: tensor %s holds a non-finite value (%v at flat index %d): fix the checkpoint, or pass --allow-nonfinite to merge it anyway", t.File, checkpoint.QuoteName(t.Name), data[bad], start+int64(bad))
}

// grow returns buf resized to n, reallocating only when too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
