package models

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/editkit/editkit/checkpoint"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// ForwardFn is a model's forward pass as a pure graph function of its
// weights and inputs.
type ForwardFn func(p Params, inputs []*graph.Node) []*graph.Node

// Func runs a ForwardFn with the weights as graph parameters. A graph is
// built and compiled once per shape of the inputs; calling it again with
// other weights of the same shapes (a merged or fine-tuned checkpoint)
// reuses the compiled graph. It is safe for concurrent use.
type Func struct {
	specs  []checkpoint.TensorSpec
	fn     ForwardFn
	exec   *graph.Exec
	builds atomic.Int64
	mu     sync.Mutex
}

// NewFunc prepares fn for the weights that specs declare (in that order they
// become the graph's first parameters, the inputs follow). Nothing is
// compiled until the first Call.
func NewFunc(b backends.Backend, name string, specs []checkpoint.TensorSpec, fn ForwardFn) (*Func, error) {
	f := &Func{specs: specs, fn: fn}
	exec, err := graph.NewExec(b, f.build)
	if err != nil {
		return nil, err
	}
	f.exec = exec.WithName(name).SetMaxCache(-1)
	return f, nil
}

func (f *Func) build(all []*graph.Node) []*graph.Node {
	f.builds.Add(1)
	n := len(f.specs)
	if len(all) < n {
		panic(fmt.Errorf("models.Func: %d arguments for %d weights", len(all), n))
	}
	p := make(Params, n)
	for i, s := range f.specs {
		p[s.Name] = all[i]
	}
	return f.fn(p, all[n:])
}

// Call runs the function on inputs (tensors, or Go slices GoMLX converts)
// with the weights w, which must hold every declared weight with its shape.
func (f *Func) Call(w Weights, inputs ...any) (outs []*tensors.Tensor, err error) {
	if err := w.Check(f.specs); err != nil {
		return nil, err
	}
	args := make([]any, 0, len(f.specs)+len(inputs))
	for _, s := range f.specs {
		args = append(args, w[s.Name])
	}
	args = append(args, inputs...)
	// One call at a time: graph.Exec may transfer a weight tensor to the
	// device during a call, and tensors are not safe for concurrent transfer.
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		// graph.Exec returns panics of type error as errors; others
		// (a runtime error inside a backend) would escape.
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("models.Func: %v", r)
		}
	}()
	return f.exec.Exec(args...)
}

// Builds is the number of graphs built (and compiled) so far.
func (f *Func) Builds() int { return int(f.builds.Load()) }

// Specs returns the declared weights.
func (f *Func) Specs() []checkpoint.TensorSpec { return f.specs }

// Finalize frees the compiled graphs.
func (f *Func) Finalize() { f.exec.Finalize() }

// Pixels wraps a batch of channels-last float32 images, layout [batch,
// height, width, 3] as datasets.Batch.Images holds them, as a tensor (a
// copy) for the models' Run and Encode methods.
func Pixels(data []float32, batch, height, width int) (*tensors.Tensor, error) {
	if batch <= 0 || height <= 0 || width <= 0 || len(data) != batch*height*width*3 {
		return nil, fmt.Errorf("models.Pixels: %d values are not %d images of %dx%dx3", len(data), batch, height, width)
	}
	return tensors.FromFlatDataAndDimensions(data, batch, height, width, 3), nil
}
