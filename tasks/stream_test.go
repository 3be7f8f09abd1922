package tasks_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// rec is a copy of what a ChunkFunc saw.
type rec struct {
	seq, index, worker int
	name               string
	start              int64
	base               []float64
	taus, models       [][]float64
	modelNil           []bool
	out                int
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// scan records every chunk of a Scan, sorted by Seq.
func scan(t *testing.T, s *tasks.Set, opts tasks.StreamOptions) []rec {
	t.Helper()
	var mu sync.Mutex
	var recs []rec
	err := s.Scan(opts, func(w int, c *tasks.Chunk) error {
		r := rec{seq: c.Seq, index: c.Index, worker: w, name: c.Tensor.Name, start: c.Start, base: f64s(c.Base), out: len(c.Out)}
		for i := range c.Taus {
			r.taus = append(r.taus, f64s(c.Taus[i]))
			r.models = append(r.models, f64s(c.Models[i]))
			r.modelNil = append(r.modelNil, c.Models[i] == nil)
		}
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	return recs
}

// span is a chunk's expected place: tensor index, start and length.
type span struct {
	index     int
	start, n  int64
	tensorLen int64
}

// wantSpans lays tensors of the given sizes out in chunks of chunk elements
// (whole tensors when whole), one empty chunk for an empty tensor.
func wantSpans(sizes []int64, chunk int64, whole bool) []span {
	var out []span
	for i, n := range sizes {
		if n == 0 {
			out = append(out, span{i, 0, 0, 0})
			continue
		}
		step := chunk
		if whole {
			step = n
		}
		for s := int64(0); s < n; s += step {
			out = append(out, span{i, s, min(step, n-s), n})
		}
	}
	return out
}

func TestScanVisitsEveryElementOnce(t *testing.T) {
	f := newFixture(t)
	// Members: a stored vector and two fine-tuned models.
	s := openSet(t, f.base.path, f.tv1, f.ft2.path, f.ft1.path)
	taus := []map[string][]float64{f.tau(f.ft1), f.tau(f.ft2), f.tau(f.ft1)}
	thetas := []map[string][]float64{f.ft1.vals, f.ft2.vals, f.ft1.vals}
	fl := floatDefs(defs)
	var sizes []int64
	for _, d := range fl {
		sizes = append(sizes, numel(d.shape))
	}
	for _, chunk := range []int64{0, 1, 3, 7} {
		for _, workers := range []int{1, 2, 4} {
			for _, whole := range []bool{false, true} {
				for _, withModels := range []bool{false, true} {
					name := fmt.Sprintf("chunk=%d/workers=%d/whole=%v/models=%v", chunk, workers, whole, withModels)
					t.Run(name, func(t *testing.T) {
						opts := tasks.StreamOptions{ChunkElems: chunk, Workers: workers, Whole: whole, Models: withModels}
						recs := scan(t, s, opts)
						eff := chunk
						if eff == 0 {
							eff = tasks.DefaultChunk
						}
						want := wantSpans(sizes, eff, whole)
						if len(recs) != len(want) {
							t.Fatalf("%d chunks, want %d", len(recs), len(want))
						}
						for k, r := range recs {
							w := want[k]
							d := fl[w.index]
							if r.seq != k {
								t.Fatalf("chunk %d has Seq %d: sequence numbers are not 0..%d", k, r.seq, len(want)-1)
							}
							if r.index != w.index || r.name != d.name || r.start != w.start || int64(len(r.base)) != w.n {
								t.Fatalf("chunk %d = %s (index %d) [%d, +%d), want %s (index %d) [%d, +%d)",
									k, r.name, r.index, r.start, len(r.base), d.name, w.index, w.start, w.n)
							}
							if r.worker < 0 || r.worker >= workers {
								t.Errorf("worker %d outside [0, %d)", r.worker, workers)
							}
							if r.out != 0 {
								t.Errorf("Scan chunk has an Out of %d", r.out)
							}
							lo, hi := w.start, w.start+w.n
							if !sameVals(r.base, f.base.vals[d.name][lo:hi]) {
								t.Errorf("chunk %d: Base %v, want %v", k, r.base, f.base.vals[d.name][lo:hi])
							}
							for i := range taus {
								if !sameVals(r.taus[i], taus[i][d.name][lo:hi]) {
									t.Errorf("chunk %d: Taus[%d] %v, want %v", k, i, r.taus[i], taus[i][d.name][lo:hi])
								}
								switch {
								case !withModels:
									if w.n > 0 && !r.modelNil[i] {
										t.Errorf("chunk %d: Models[%d] is set without StreamOptions.Models", k, i)
									}
								case !sameVals(r.models[i], thetas[i][d.name][lo:hi]):
									t.Errorf("chunk %d: Models[%d] %v, want θ %v", k, i, r.models[i], thetas[i][d.name][lo:hi])
								}
							}
						}
					})
				}
			}
		}
	}
}

// outputs runs Apply, WriteCombination and Build with opts and returns
// the bytes of their weight files.
func outputs(t *testing.T, f *fixture, opts tasks.StreamOptions) [][]byte {
	t.Helper()
	dir := t.TempDir()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	model := filepath.Join(dir, "model")
	if err := tasks.Apply(s, []float32{0.3, -1.7}, model, tasks.WriteOptions{}, opts); err != nil {
		t.Fatal(err)
	}
	bf := filepath.Join(dir, "combo.safetensors")
	if err := tasks.WriteCombination(s, []float32{0.3, -1.7}, bf, tasks.WriteOptions{DType: checkpoint.BF16}, opts); err != nil {
		t.Fatal(err)
	}
	tv := filepath.Join(dir, "tv.safetensors")
	if err := tasks.Build(openSet(t, f.base.path, f.ft1.path), tv, tasks.WriteOptions{}, opts); err != nil {
		t.Fatal(err)
	}
	return [][]byte{read(filepath.Join(model, "model.safetensors")), read(bf), read(tv)}
}

func TestStreamOutputsIdenticalAcrossChunksAndWorkers(t *testing.T) {
	f := newFixture(t)
	ref := outputs(t, f, tasks.StreamOptions{Workers: 1, ChunkElems: 1})
	refStats, err := tasks.Stats(openSet(t, f.base.path, f.tv1, f.ft2.path), tasks.StreamOptions{Workers: 1, ChunkElems: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int64{3, 7, 0} {
		for _, workers := range []int{1, 2, 4} {
			t.Run(fmt.Sprintf("chunk=%d/workers=%d", chunk, workers), func(t *testing.T) {
				opts := tasks.StreamOptions{ChunkElems: chunk, Workers: workers}
				for i, got := range outputs(t, f, opts) {
					if !bytes.Equal(got, ref[i]) {
						t.Errorf("output %d differs from the one chunk=1, workers=1 wrote", i)
					}
				}
				if chunk == 3 {
					st, err := tasks.Stats(openSet(t, f.base.path, f.tv1, f.ft2.path), opts)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(st, refStats) {
						t.Errorf("Stats differ from one worker's")
					}
				}
			})
		}
	}
}

// A tensor larger than DefaultChunk streams in several chunks by default
// and gives the same bytes whatever the chunking.
func TestStreamLargeTensor(t *testing.T) {
	dir := t.TempDir()
	ds := []tensorDef{
		{"big.weight", checkpoint.F32, []int64{tasks.DefaultChunk + 1001}},
		{"ids", checkpoint.I64, []int64{2}},
		{"small.weight", checkpoint.BF16, []int64{5}},
	}
	base := genModel(t, ds, 11, nil).write(t, filepath.Join(dir, "base.safetensors"), nil, 1)
	ft := genModel(t, ds, 12, nil).write(t, filepath.Join(dir, "ft.safetensors"), nil, 1)
	s := openSet(t, base.path, ft.path)
	var chunks int
	var mu sync.Mutex
	if err := s.Scan(tasks.StreamOptions{}, func(int, *tasks.Chunk) error { mu.Lock(); chunks++; mu.Unlock(); return nil }); err != nil {
		t.Fatal(err)
	}
	if chunks != 3 {
		t.Errorf("%d chunks by default, want 3", chunks)
	}
	var ref []byte
	for _, opts := range []tasks.StreamOptions{{}, {ChunkElems: 7, Workers: 4}, {ChunkElems: 1 << 12, Workers: 2}, {Whole: true, Workers: 1}} {
		out := filepath.Join(t.TempDir(), "out.safetensors")
		if err := tasks.Apply(s, []float32{0.5}, out, tasks.WriteOptions{DType: checkpoint.F32}, opts); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = b
			c := mustOpen(t, out)
			for _, d := range floatDefs(ds) {
				got := readVals(t, c, d.name)
				for k, v := range got {
					if want := base.vals[d.name][k] + 0.5*(ft.vals[d.name][k]-base.vals[d.name][k]); v != want {
						t.Fatalf("%s[%d] = %v, want %v", d.name, k, v, want)
					}
				}
			}
			if got := readRaw(t, c, "ids"); !bytes.Equal(got, base.raw["ids"]) {
				t.Errorf("ids = %x, want %x", got, base.raw["ids"])
			}
		} else if !bytes.Equal(b, ref) {
			t.Errorf("%+v: output differs", opts)
		}
	}
}

func TestStreamZeroElementTensors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ds   []tensorDef
	}{
		{"mixed", []tensorDef{
			{"a", checkpoint.F32, []int64{0}},
			{"b", checkpoint.F32, []int64{2}},
			{"c", checkpoint.I64, []int64{0}},
			{"d", checkpoint.BF16, []int64{0, 4}},
			{"e", checkpoint.F32, []int64{3, 0, 2}},
		}},
		{"only empty", []tensorDef{
			{"a", checkpoint.F32, []int64{0}},
			{"c", checkpoint.I64, []int64{0}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := genModel(t, tc.ds, 21, nil).write(t, filepath.Join(dir, "base"), nil, 1)
			ft := genModel(t, tc.ds, 22, nil).write(t, filepath.Join(dir, "ft.safetensors"), nil, 1)
			for _, opts := range []tasks.StreamOptions{{ChunkElems: 1, Workers: 3}, {Whole: true}, {}} {
				s := openSet(t, base.path, ft.path)
				var n int
				var mu sync.Mutex
				err := s.Scan(opts, func(_ int, c *tasks.Chunk) error {
					mu.Lock()
					defer mu.Unlock()
					n += len(c.Base)
					if len(c.Taus[0]) != len(c.Base) {
						t.Errorf("%s: τ of %d elements for a base chunk of %d", c.Tensor.Name, len(c.Taus[0]), len(c.Base))
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				var want int
				for _, d := range floatDefs(tc.ds) {
					want += int(numel(d.shape))
				}
				if n != want {
					t.Errorf("Scan saw %d elements, want %d", n, want)
				}

				tv := filepath.Join(t.TempDir(), "tv")
				if err := tasks.Build(s, tv, tasks.WriteOptions{}, opts); err != nil {
					t.Fatal(err)
				}
				model := filepath.Join(t.TempDir(), "model.safetensors")
				if err := tasks.Apply(s, []float32{1}, model, tasks.WriteOptions{}, opts); err != nil {
					t.Fatal(err)
				}
				for _, out := range []struct {
					path string
					ds   []tensorDef
					want map[string][]float64
				}{{tv, floatDefs(tc.ds), nil}, {model, tc.ds, ft.vals}} {
					c := mustOpen(t, out.path)
					if got := names(c); !slices.Equal(got, defNames(out.ds)) {
						t.Errorf("%s: tensors %q, want %q", out.path, got, defNames(out.ds))
					}
					for _, d := range out.ds {
						info, _ := c.Tensor(d.name)
						if !slices.Equal(info.Shape, d.shape) {
							t.Errorf("%s: %q shape %v, want %v", out.path, d.name, info.Shape, d.shape)
						}
						if !isFloat(d.dtype) {
							continue
						}
						want := out.want[d.name]
						if want == nil {
							b, v := base.vals[d.name], ft.vals[d.name]
							want = make([]float64, len(b))
							for k := range b {
								want[k] = v[k] - b[k]
							}
						}
						if got := readVals(t, c, d.name); !sameVals(got, want) {
							t.Errorf("%s: %q = %v, want %v", out.path, d.name, got, want)
						}
					}
				}
			}
		})
	}
}

func TestStreamErrorAborts(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	boom := errors.New("boom")
	const chunks = 36 // of 3 elements: 5+7+6+8+1+1+3+5
	type op func(out string, opts tasks.StreamOptions, fn tasks.ChunkFunc) error
	ops := []struct {
		name string
		out  string
		run  op
	}{
		{"Scan", "", func(_ string, o tasks.StreamOptions, fn tasks.ChunkFunc) error { return s.Scan(o, fn) }},
		{"WriteModel folder", "out", func(out string, o tasks.StreamOptions, fn tasks.ChunkFunc) error {
			return s.WriteModel(out, tasks.WriteOptions{}, o, fn)
		}},
		{"WriteModel file", "out.safetensors", func(out string, o tasks.StreamOptions, fn tasks.ChunkFunc) error {
			return s.WriteModel(out, tasks.WriteOptions{}, o, fn)
		}},
		{"WriteVector folder", "tv", func(out string, o tasks.StreamOptions, fn tasks.ChunkFunc) error {
			return s.WriteVector(out, tasks.WriteOptions{}, o, fn)
		}},
		{"WriteVector file", "tv.safetensors", func(out string, o tasks.StreamOptions, fn tasks.ChunkFunc) error {
			return s.WriteVector(out, tasks.WriteOptions{}, o, fn)
		}},
	}
	for _, o := range ops {
		for _, workers := range []int{1, 2, 4} {
			for _, failAt := range []int{0, 5, 17, chunks - 1} {
				t.Run(fmt.Sprintf("%s/workers=%d/seq=%d", o.name, workers, failAt), func(t *testing.T) {
					out := ""
					if o.out != "" {
						out = filepath.Join(t.TempDir(), o.out)
					}
					var mu sync.Mutex
					var maxSeq int
					var progress int64
					opts := tasks.StreamOptions{ChunkElems: 3, Workers: workers, Progress: func(done, _ int64) { progress = done }}
					err := o.run(out, opts, func(_ int, c *tasks.Chunk) error {
						mu.Lock()
						maxSeq = max(maxSeq, c.Seq)
						mu.Unlock()
						if c.Seq == failAt {
							return fmt.Errorf("chunk %d: %w", c.Seq, boom)
						}
						copy(c.Out, c.Base)
						return nil
					})
					if !errors.Is(err, boom) {
						t.Fatalf("got %v, want the ChunkFunc's error", err)
					}
					wantErr(t, err, fmt.Sprintf("chunk %d:", failAt))
					// Workers stop taking chunks soon after one fails: at most
					// those queued and in flight run on.
					if maxSeq > failAt+2*workers+4 {
						t.Errorf("chunk %d ran after chunk %d failed", maxSeq, failAt)
					}
					if progress >= f.floatBytes() {
						t.Errorf("Progress reported %d of %d bytes done after a failure", progress, f.floatBytes())
					}
					if out != "" {
						checkNoOutput(t, out)
					}
				})
			}
		}
	}
}

// floatBytes is the size of the base's float tensors, from the definitions.
func (f *fixture) floatBytes() int64 {
	var n int64
	for _, d := range floatDefs(defs) {
		n += numel(d.shape) * dtypeSize(d.dtype)
	}
	return n
}

func TestStreamProgress(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	for _, tc := range []struct {
		name   string
		chunk  int64
		whole  bool
		chunks int
	}{
		{"chunk 4", 4, false, 4 + 5 + 5 + 6 + 1 + 1 + 3 + 4},
		{"whole", 4, true, 8},
		{"default", 0, false, 8},
	} {
		for _, write := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/write=%v", tc.name, write), func(t *testing.T) {
				var calls [][2]int64
				opts := tasks.StreamOptions{ChunkElems: tc.chunk, Whole: tc.whole, Workers: 3, Progress: func(done, total int64) {
					calls = append(calls, [2]int64{done, total})
				}}
				fn := func(_ int, c *tasks.Chunk) error { copy(c.Out, c.Base); return nil }
				var err error
				if write {
					err = s.WriteModel(filepath.Join(t.TempDir(), "m.safetensors"), tasks.WriteOptions{}, opts, fn)
				} else {
					err = s.Scan(opts, fn)
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(calls) != tc.chunks {
					t.Errorf("Progress called %d times, want once per chunk (%d)", len(calls), tc.chunks)
				}
				total := f.floatBytes()
				var last int64
				for i, c := range calls {
					if c[1] != total {
						t.Errorf("call %d: total %d, want %d", i, c[1], total)
					}
					if c[0] < last || c[0] > total {
						t.Errorf("call %d: done %d after %d (total %d)", i, c[0], last, total)
					}
					last = c[0]
				}
				if last != total {
					t.Errorf("last done %d, want %d", last, total)
				}
			})
		}
	}
}

// setVal stores v at flat index k of a float tensor of m.
func setVal(t *testing.T, m *model, name string, k int, v float64) {
	t.Helper()
	m.vals[name][k] = v
	for i := range m.ts {
		if m.ts[i].name == name {
			m.ts[i].data = encode(t, m.ts[i].dtype, m.vals[name])
			m.raw[name] = m.ts[i].data
		}
	}
}

func TestNonFinite(t *testing.T) {
	ds := []tensorDef{
		{"a", checkpoint.F32, []int64{4, 5}},
		{"b", checkpoint.BF16, []int64{20}},
	}
	const bad = 13 // in the fourth chunk of 4
	for _, tc := range []struct {
		name   string
		where  string // "ft", "tv" or "base"
		tensor string
		tvType checkpoint.DType
		v      float64
	}{
		{"F32 NaN in fine-tuned", "ft", "a", 0, math.NaN()},
		{"F32 -Inf in fine-tuned", "ft", "a", 0, math.Inf(-1)},
		{"BF16 NaN in fine-tuned", "ft", "b", 0, math.NaN()},
		{"BF16 +Inf in fine-tuned", "ft", "b", 0, math.Inf(1)},
		{"F32 NaN in stored vector", "tv", "a", checkpoint.F32, math.NaN()},
		{"BF16 NaN in stored vector", "tv", "b", checkpoint.BF16, math.NaN()},
		{"BF16 Inf in base", "base", "b", 0, math.Inf(1)},
		{"F32 NaN in base", "base", "a", 0, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := genModel(t, ds, 31, nil)
			ft := genModel(t, ds, 32, nil)
			var tv *model
			if tc.where == "tv" {
				over := map[string]checkpoint.DType{"a": tc.tvType, "b": tc.tvType}
				tv = genModel(t, ds, 33, over)
			}
			target := map[string]*model{"ft": ft, "tv": tv, "base": base}[tc.where]
			setVal(t, target, tc.tensor, bad, tc.v)
			base.write(t, filepath.Join(dir, "base"), nil, 1)
			ft.write(t, filepath.Join(dir, "ft.safetensors"), nil, 1)
			members := []string{ft.path}
			if tv != nil {
				tv.write(t, filepath.Join(dir, "tv.safetensors"), map[string]string{tasks.KindKey: tasks.KindTaskVector}, 1)
				members = append(members, tv.path)
			}
			file := target.path
			if tc.where == "base" {
				file = filepath.Join(base.path, "model.safetensors")
			}
			for _, chunk := range []int64{4, 0} {
				opts := tasks.StreamOptions{ChunkElems: chunk, Workers: 2}
				s := openSet(t, base.path, members...)
				err := s.Scan(opts, func(int, *tasks.Chunk) error { return nil })
				wantErr(t, err, file+": ", fmt.Sprintf("tensor %q", tc.tensor), fmt.Sprintf("at flat index %d)", bad), "--allow-nonfinite")
				out := filepath.Join(t.TempDir(), "out")
				wantErr(t, s.WriteModel(out, tasks.WriteOptions{}, opts, func(int, *tasks.Chunk) error { return nil }), fmt.Sprintf("flat index %d", bad))
				checkNoOutput(t, out)

				// Let through, the value reaches the ChunkFunc.
				for _, mode := range []string{"AllowNonfinite", "SkipFiniteCheck"} {
					o := opts
					if mode == "AllowNonfinite" {
						s.AllowNonfinite = true
					} else {
						o.SkipFiniteCheck = true
					}
					var mu sync.Mutex
					var seen []string
					err := s.Scan(o, func(_ int, c *tasks.Chunk) error {
						if c.Tensor.Name != tc.tensor {
							return nil
						}
						k := bad - int(c.Start)
						if k < 0 || k >= len(c.Base) {
							return nil
						}
						mu.Lock()
						defer mu.Unlock()
						for i, tau := range c.Taus {
							if !isFinite(tau[k]) {
								seen = append(seen, fmt.Sprintf("τ%d", i))
							}
						}
						if !isFinite(c.Base[k]) {
							seen = append(seen, "base")
						}
						return nil
					})
					s.AllowNonfinite = false
					if err != nil {
						t.Fatalf("%s: %v", mode, err)
					}
					if len(seen) == 0 {
						t.Errorf("%s: the non-finite value never reached the ChunkFunc", mode)
					}
				}
			}
		})
	}
}

func isFinite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// Errors name only the file at fault, with its absolute flat index, also in
// a sharded member.
func TestNonFiniteShardedMember(t *testing.T) {
	dir := t.TempDir()
	ds := []tensorDef{
		{"a", checkpoint.F32, []int64{7}},
		{"b", checkpoint.BF16, []int64{30}},
	}
	base := genModel(t, ds, 41, nil).write(t, filepath.Join(dir, "base.safetensors"), nil, 1)
	ft := genModel(t, ds, 42, nil)
	setVal(t, ft, "b", 29, math.NaN())
	ft.write(t, filepath.Join(dir, "ft"), nil, 2)
	s := openSet(t, base.path, ft.path)
	err := s.Scan(tasks.StreamOptions{ChunkElems: 8}, func(int, *tasks.Chunk) error { return nil })
	shard := filepath.Join(ft.path, "model-00002-of-00002.safetensors")
	wantErr(t, err, shard, `tensor "b"`, "flat index 29)")
	if err != nil && strings.Contains(err.Error(), base.path+":") {
		t.Errorf("error %q blames the base", err)
	}
}
