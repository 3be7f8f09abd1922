package tasks

import (
	"maps"
	"slices"
	"sync"
)

// Ordered collects one partial result per chunk from concurrent workers and
// hands them back in chunk order, so floating-point reductions are
// deterministic.
type Ordered[T any] struct {
	mu sync.Mutex
	m  map[int]T
}

// Put records the partial result of chunk seq.
func (o *Ordered[T]) Put(seq int, v T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[int]T)
	}
	o.m[seq] = v
}

// Each visits the partial results in chunk order.
func (o *Ordered[T]) Each(fn func(T)) {
	for _, k := range slices.Sorted(maps.Keys(o.m)) {
		fn(o.m[k])
	}
}
