package train

import (
	"fmt"

	"github.com/editkit/editkit/datasets"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// batch is one step's input, as tensors owned by the receiver.
type batch struct {
	epoch  int
	size   int
	pixels *tensors.Tensor // float32 [size, H, W, 3]
	labels *tensors.Tensor // int32 [size]
	err    error
}

func (b *batch) free() {
	if b.pixels != nil {
		b.pixels.FinalizeAll()
	}
	if b.labels != nil {
		b.labels.FinalizeAll()
	}
}

// loader yields the batches of a run of steps steps over ds, epoch after
// epoch, each epoch in the order datasets.BatchOptions{Shuffle: true, Seed,
// Epoch} gives. A goroutine prepares the next batch while a step runs.
type loader struct {
	ch   chan *batch
	stop chan struct{}
}

func newLoader(ds *datasets.Dataset, pre datasets.Preprocess, o Options, steps int) *loader {
	l := &loader{ch: make(chan *batch, 1), stop: make(chan struct{})}
	go func() {
		defer close(l.ch)
		send := func(b *batch) bool {
			select {
			case l.ch <- b:
				return true
			case <-l.stop:
				b.free()
				return false
			}
		}
		done := 0
		for epoch := 0; done < steps; epoch++ {
			it, err := ds.Batches(pre, datasets.BatchOptions{BatchSize: o.BatchSize, Shuffle: true, Seed: o.Seed, Epoch: epoch, Workers: o.Workers})
			if err != nil {
				send(&batch{err: err})
				return
			}
			n := 0
			for done < steps && it.Next() {
				b := it.Batch()
				// The tensors copy the batch, whose slices the iterator reuses.
				nb := &batch{epoch: epoch, size: b.Size,
					pixels: tensors.FromFlatDataAndDimensions(b.Images, b.Size, b.Height, b.Width, 3),
					labels: tensors.FromFlatDataAndDimensions(b.Labels, b.Size)}
				if !send(nb) {
					return
				}
				done++
				n++
			}
			if err := it.Err(); err != nil {
				send(&batch{err: err})
				return
			}
			if n == 0 {
				send(&batch{err: fmt.Errorf("train: %s yields no batches", ds.Name())})
				return
			}
		}
	}()
	return l
}

// next returns the next batch, nil at the end.
func (l *loader) next() (*batch, error) {
	b, ok := <-l.ch
	if !ok {
		return nil, nil
	}
	if b.err != nil {
		return nil, b.err
	}
	return b, nil
}

// close stops the goroutine and frees what it prepared.
func (l *loader) close() {
	close(l.stop)
	for b := range l.ch {
		b.free()
	}
}
