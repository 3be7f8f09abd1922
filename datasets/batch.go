package datasets

import (
	"fmt"
	"image"
	"runtime"
	"sync"
)

// BatchOptions configure a pass over a Dataset.
type BatchOptions struct {
	BatchSize int // examples a batch (> 0)
	// Shuffle visits the examples in a pseudo-random order that depends only
	// on Seed and Epoch: the Fisher–Yates shuffle of Permutation driven by
	// rand.NewPCG(Seed, Epoch+1). Without it the order is 0, 1, 2, …
	Shuffle bool
	Seed    uint64
	Epoch   int
	// DropLast drops a final batch smaller than BatchSize.
	DropLast bool
	// Workers preprocess the images of a batch in parallel (0: GOMAXPROCS).
	Workers int
}

// Batch is one batch of preprocessed examples.
type Batch struct {
	// Images holds Size images as float32, layout [Size, Height, Width, 3]
	// (channels last), preprocessed as the iterator's Preprocess says.
	Images        []float32
	Labels        []int32 // [Size]
	Indices       []int   // the examples' positions in the Dataset
	Size          int
	Height, Width int
}

// BatchIterator yields the batches of one pass (epoch) over a Dataset:
//
//	it, err := ds.Batches(datasets.CLIP(224), datasets.BatchOptions{BatchSize: 128})
//	for it.Next() {
//		b := it.Batch()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
//
// The Batch and its slices are reused by the next call to Next: copy what
// must outlive it.
type BatchIterator struct {
	ds      *Dataset
	pp      *prepared
	order   []int
	size    int
	pos     int
	workers int
	batch   Batch
	scratch []*image.RGBA
	err     error
}

// Batches returns an iterator over d's examples, preprocessed by p.
func (d *Dataset) Batches(p Preprocess, o BatchOptions) (*BatchIterator, error) {
	pp, err := p.prepare()
	if err != nil {
		return nil, err
	}
	if o.BatchSize <= 0 {
		return nil, fmt.Errorf("datasets: batch size %d, want > 0", o.BatchSize)
	}
	if o.Epoch < 0 {
		return nil, fmt.Errorf("datasets: epoch %d, want ≥ 0", o.Epoch)
	}
	n := d.Len()
	var order []int
	if o.Shuffle {
		order = permutation(n, o.Seed, uint64(o.Epoch)+1)
	} else {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	if o.DropLast {
		order = order[:n-n%o.BatchSize]
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, o.BatchSize)
	it := &BatchIterator{ds: d, pp: pp, order: order, size: o.BatchSize, workers: workers,
		scratch: make([]*image.RGBA, workers)}
	s := p.Size
	it.batch = Batch{
		Images:  make([]float32, min(o.BatchSize, max(len(order), 1))*s*s*3),
		Labels:  make([]int32, 0, o.BatchSize),
		Indices: make([]int, 0, o.BatchSize),
		Height:  s, Width: s,
	}
	for i := range it.scratch {
		it.scratch[i] = image.NewRGBA(image.Rect(0, 0, s, s))
	}
	return it, nil
}

// NumBatches is the number of batches of the pass.
func (it *BatchIterator) NumBatches() int { return (len(it.order) + it.size - 1) / it.size }

// Order returns the positions in the Dataset in the order the pass visits them.
func (it *BatchIterator) Order() []int { return it.order }

// Next prepares the next batch; it returns false at the end or on an error (see Err).
func (it *BatchIterator) Next() bool {
	if it.err != nil || it.pos >= len(it.order) {
		return false
	}
	idx := it.order[it.pos:min(it.pos+it.size, len(it.order))]
	it.pos += len(idx)
	b := &it.batch
	b.Size = len(idx)
	b.Indices = append(b.Indices[:0], idx...)
	b.Labels = b.Labels[:0]
	for _, i := range idx {
		b.Labels = append(b.Labels, int32(it.ds.Label(i)))
	}
	per := it.pp.TensorLen()
	b.Images = b.Images[:len(idx)*per]

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		firstAt  = len(idx)
	)
	workers := min(it.workers, len(idx))
	for w := range workers {
		wg.Go(func() {
			for k := w; k < len(idx); k += workers {
				img, err := it.ds.Image(idx[k])
				if err == nil {
					err = it.pp.apply(img, b.Images[k*per:(k+1)*per], it.scratch[w])
				}
				if err != nil {
					mu.Lock()
					if k < firstAt {
						firstAt, firstErr = k, fmt.Errorf("%s example %d: %w", it.ds.Name(), idx[k], err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		it.err = firstErr
		return false
	}
	return true
}

// Batch returns the current batch (valid until the next call to Next).
func (it *BatchIterator) Batch() *Batch { return &it.batch }

// Err returns the error that ended the pass early, if any.
func (it *BatchIterator) Err() error { return it.err }
