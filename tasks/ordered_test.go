package tasks_test

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/editkit/editkit/tasks"
)

func TestOrdered(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, workers int
		gaps       bool
	}{
		{"empty", 0, 1, false},
		{"one", 1, 1, false},
		{"many, eight goroutines", 1000, 8, false},
		{"sparse seqs", 300, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seqs := make([]int, tc.n)
			for i := range seqs {
				seqs[i] = i
				if tc.gaps {
					seqs[i] = 7*i + 3
				}
			}
			shuffled := slices.Clone(seqs)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			var o tasks.Ordered[[2]int]
			var wg sync.WaitGroup
			for w := range tc.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := w; k < len(shuffled); k += tc.workers {
						o.Put(shuffled[k], [2]int{shuffled[k], -shuffled[k]})
					}
				}()
			}
			wg.Wait()
			var got []int
			o.Each(func(v [2]int) {
				if v[1] != -v[0] {
					t.Errorf("value %v is not the one put for seq %d", v, v[0])
				}
				got = append(got, v[0])
			})
			if len(got) != len(seqs) {
				t.Fatalf("Each visited %d results, want %d", len(got), len(seqs))
			}
			for k := range got {
				if got[k] != seqs[k] {
					t.Fatalf("Each visited seq %d at position %d, want %d", got[k], k, seqs[k])
				}
			}
		})
	}
}

// A float64 sum collected through Ordered does not depend on the order in
// which chunks finish.
func TestOrderedDeterministicSum(t *testing.T) {
	vals := make([]float64, 500)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range vals {
		vals[i] = r.NormFloat64() * float64(int(1)<<r.IntN(40))
	}
	sum := func(seed uint64) float64 {
		var o tasks.Ordered[float64]
		idx := make([]int, len(vals))
		for i := range idx {
			idx[i] = i
		}
		rand.New(rand.NewPCG(seed, 0)).Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < len(idx); k += 4 {
					o.Put(idx[k], vals[idx[k]])
				}
			}()
		}
		wg.Wait()
		var s float64
		o.Each(func(v float64) { s += v })
		return s
	}
	var want float64
	for _, v := range vals {
		want += v
	}
	for seed := range uint64(5) {
		if got := sum(seed); got != want {
			t.Errorf("seed %d: sum %v, want the in-order sum %v", seed, got, want)
		}
	}
}
