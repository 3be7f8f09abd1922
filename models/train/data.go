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

// stepBatch is one training step's input, as a prefetcher carries it.
type stepBatch interface {
	free()
	failed() error
	epochOf() int
	inputs() []any
}

// runSteps trains for total steps on the batches of ld, and returns the
// engine's weights with the tracker's summary.
func runSteps[B stepBatch](eng *engine, ld *prefetcher[B], o Options, tr *tracker, total int) (*Result, error) {
	defer ld.close()
	epochs := 0
	for step := 0; step < total; step++ {
		b, ok, err := ld.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("train: the data ran out after %d of %d steps", step, total)
		}
		lr := o.LR(step, total)
		out, err := eng.Step(lr, b.inputs()...)
		b.free()
		if err != nil {
			return nil, err
		}
		epochs = b.epochOf() + 1
		tr.step(b.epochOf(), out, lr)
	}
	w, err := eng.Weights()
	if err != nil {
		return nil, err
	}
	return tr.result(w, epochs), nil
}

// prefetcher runs a producer on its own goroutine, so the next batch is
// prepared while a step runs. The producer hands batches to send, which
// reports false once the consumer has closed the prefetcher.
type prefetcher[B stepBatch] struct {
	ch   chan B
	stop chan struct{}
}

func prefetch[B stepBatch](produce func(send func(B) bool)) *prefetcher[B] {
	p := &prefetcher[B]{ch: make(chan B, 1), stop: make(chan struct{})}
	go func() {
		defer close(p.ch)
		produce(func(b B) bool {
			select {
			case p.ch <- b:
				return true
			case <-p.stop:
				b.free()
				return false
			}
		})
	}()
	return p
}

// next returns the next batch; ok is false at the end.
func (p *prefetcher[B]) next() (b B, ok bool, err error) {
	b, ok = <-p.ch
	if ok {
		err = b.failed()
	}
	return b, ok && err == nil, err
}

// close stops the producer and frees what it prepared.
func (p *prefetcher[B]) close() {
	close(p.stop)
	for b := range p.ch {
		b.free()
	}
}

func (b *batch) failed() error { return b.err }
func (b *batch) epochOf() int  { return b.epoch }
func (b *batch) inputs() []any { return []any{b.pixels, b.labels} }

// newLoader yields the batches of a run of steps steps over ds, epoch after
// epoch, each epoch in the order datasets.BatchOptions{Shuffle: true, Seed,
// Epoch} gives.
func newLoader(ds *datasets.Dataset, pre datasets.Preprocess, o Options, steps int) *prefetcher[*batch] {
	return prefetch(func(send func(*batch) bool) {
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
	})
}
