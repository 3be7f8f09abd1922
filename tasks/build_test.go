package tasks_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

func TestBuild(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		dtype  checkpoint.DType
		want   checkpoint.DType
		out    string
		chunks int64
	}{
		{"default F32 file", 0, checkpoint.F32, "tv.safetensors", 0},
		{"F32 folder chunked", checkpoint.F32, checkpoint.F32, "tv", 4},
		{"BF16 folder", checkpoint.BF16, checkpoint.BF16, "tv", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSet(t, f.base.path, f.ft1.path)
			out := filepath.Join(t.TempDir(), tc.out)
			wo := tasks.WriteOptions{DType: tc.dtype, SideFiles: map[string][]byte{"notes.txt": []byte("hi")}}
			if err := tasks.Build(s, out, wo, tasks.StreamOptions{ChunkElems: tc.chunks}); err != nil {
				t.Fatal(err)
			}
			c := mustOpen(t, out)
			if got, want := names(c), defNames(floatDefs(defs)); !slices.Equal(got, want) {
				t.Errorf("tensors %q, want the base's float tensors %q", got, want)
			}
			checkVals(t, c, f.tau(f.ft1), tc.want)
			for k, want := range map[string]string{
				tasks.KindKey:       tasks.KindTaskVector,
				tasks.BaseKey:       f.base.path,
				tasks.BaseSizeKey:   fmt.Sprint(f.baseSize(t)),
				"editkit.finetuned": f.ft1.path,
			} {
				if got := c.Metadata[k]; got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
			if !tasks.IsTaskVector(c) {
				t.Error("IsTaskVector = false")
			}
			// A task vector gets the side files it is given, never the base's.
			if filepath.Ext(out) == "" {
				if b, err := os.ReadFile(filepath.Join(out, "notes.txt")); err != nil || string(b) != "hi" {
					t.Errorf("notes.txt = %q, %v", b, err)
				}
				if _, err := os.Stat(filepath.Join(out, "config.json")); err == nil {
					t.Error("the base's config.json was copied into a task vector")
				}
			}
		})
	}
}

func TestBuildRefusesOtherSets(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name    string
		members []string
	}{
		{"two members", []string{f.ft1.path, f.ft2.path}},
		{"stored task vector", []string{f.tv1}},
		{"no member", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSet(t, f.base.path, tc.members...)
			out := filepath.Join(t.TempDir(), "tv")
			wantErr(t, tasks.Build(s, out, tasks.WriteOptions{}, tasks.StreamOptions{}), "one fine-tuned checkpoint")
			checkNoOutput(t, out)
		})
	}
}

func TestWriteCombination(t *testing.T) {
	f := newFixture(t)
	tau1, tau2 := f.tau(f.ft1), f.tau(f.ft2)
	for _, tc := range []struct {
		name    string
		members []string
		taus    []map[string][]float64
		coeffs  []float32
	}{
		{"add stored+ft", []string{f.tv1, f.ft2.path}, []map[string][]float64{tau1, tau2}, []float32{1, 1}},
		{"sub stored-ft", []string{f.tv1, f.ft2.path}, []map[string][]float64{tau1, tau2}, []float32{1, -1}},
		{"sub ft-stored", []string{f.ft2.path, f.tv1}, []map[string][]float64{tau2, tau1}, []float32{1, -1}},
		{"add ft+ft", []string{f.ft1.path, f.ft2.path}, []map[string][]float64{tau1, tau2}, []float32{1, 1}},
		{"scale stored", []string{f.tv1}, []map[string][]float64{tau1}, []float32{0.375}},
		{"scale ft", []string{f.ft2.path}, []map[string][]float64{tau2}, []float32{2.5}},
		{"neg stored", []string{f.tv1}, []map[string][]float64{tau1}, []float32{-1}},
		{"neg ft", []string{f.ft2.path}, []map[string][]float64{tau2}, []float32{-1}},
		{"weighted three", []string{f.tv1, f.ft2.path, f.ft1.path}, []map[string][]float64{tau1, tau2, tau1}, []float32{0.5, -1.25, 0.25}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSet(t, f.base.path, tc.members...)
			out := filepath.Join(t.TempDir(), "combo.safetensors")
			if err := tasks.WriteCombination(s, tc.coeffs, out, tasks.WriteOptions{}, tasks.StreamOptions{ChunkElems: 5}); err != nil {
				t.Fatal(err)
			}
			c := mustOpen(t, out)
			cs := make([]float64, len(tc.coeffs))
			for i, v := range tc.coeffs {
				cs[i] = float64(v)
			}
			checkVals(t, c, combo(tc.taus, cs), checkpoint.F32)
			if got, want := names(c), defNames(floatDefs(defs)); !slices.Equal(got, want) {
				t.Errorf("tensors %q, want %q", got, want)
			}
			if !tasks.IsTaskVector(c) || c.Metadata[tasks.BaseKey] != f.base.path {
				t.Errorf("metadata %v does not mark a task vector of %s", c.Metadata, f.base.path)
			}
		})
	}
	t.Run("wrong number of coefficients", func(t *testing.T) {
		s := openSet(t, f.base.path, f.tv1, f.ft2.path)
		out := filepath.Join(t.TempDir(), "combo")
		wantErr(t, tasks.WriteCombination(s, []float32{1}, out, tasks.WriteOptions{}, tasks.StreamOptions{}), "1 coefficients for 2")
		checkNoOutput(t, out)
	})
}

func TestApply(t *testing.T) {
	f := newFixture(t)
	tau1, tau2 := f.tau(f.ft1), f.tau(f.ft2)
	plus := func(lams ...float64) map[string][]float64 {
		out := combo([]map[string][]float64{tau1, tau2}, lams)
		for name, v := range out {
			for k := range v {
				v[k] += f.base.vals[name][k]
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		members []string
		lambdas []float32
		dtype   checkpoint.DType // output option
		want    map[string][]float64
		out     string
	}{
		// In F32 every θ_base + Σ λ_i τ_i here is exact.
		{"stored and ft to F32", []string{f.tv1, f.ft2.path}, []float32{0.5, -1.25}, checkpoint.F32, plus(0.5, -1.25), "out"},
		{"ft and ft to F32", []string{f.ft1.path, f.ft2.path}, []float32{-0.75, 2}, checkpoint.F32, plus(-0.75, 2), "out.safetensors"},
		// λ = (1, 0) gives ft1, exact in the base's own dtypes.
		{"base dtypes kept", []string{f.tv1, f.ft2.path}, []float32{1, 0}, 0, f.ft1.vals, "out"},
		{"λ=0 is the base", []string{f.tv1, f.ft2.path}, []float32{0, 0}, 0, f.base.vals, "out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSet(t, f.base.path, tc.members...)
			out := filepath.Join(t.TempDir(), tc.out)
			wo := tasks.WriteOptions{DType: tc.dtype}
			if err := tasks.Apply(s, tc.lambdas, out, wo, tasks.StreamOptions{ChunkElems: 6}); err != nil {
				t.Fatal(err)
			}
			c := mustOpen(t, out)
			if got, want := names(c), defNames(defs); !slices.Equal(got, want) {
				t.Errorf("tensors %q, want the base's %q", got, want)
			}
			checkVals(t, c, tc.want, tc.dtype)
			for _, d := range defs {
				info, _ := c.Tensor(d.name)
				if !slices.Equal(info.Shape, d.shape) {
					t.Errorf("%q: shape %v, want %v", d.name, info.Shape, d.shape)
				}
				if tc.dtype == 0 || !isFloat(d.dtype) {
					if info.DType != d.dtype {
						t.Errorf("%q: dtype %v, want the base's %v", d.name, info.DType, d.dtype)
					}
				}
				// Integer tensors come from the base byte for byte; with λ = 0
				// so does everything.
				if !isFloat(d.dtype) || slices.Equal(tc.lambdas, []float32{0, 0}) {
					if got := readRaw(t, c, d.name); !bytes.Equal(got, f.base.raw[d.name]) {
						t.Errorf("%q: bytes %x, want the base's %x", d.name, got, f.base.raw[d.name])
					}
				}
			}
			if c.Metadata[tasks.KindKey] != tasks.KindModel {
				t.Errorf("metadata %s = %q, want %q", tasks.KindKey, c.Metadata[tasks.KindKey], tasks.KindModel)
			}
			if filepath.Ext(out) == "" {
				for _, name := range []string{"config.json", "tokenizer.json"} {
					want, _ := os.ReadFile(filepath.Join(f.base.path, name))
					if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || !bytes.Equal(got, want) {
						t.Errorf("%s = %q, %v; want the base's %q", name, got, err, want)
					}
				}
			} else if es, _ := os.ReadDir(filepath.Dir(out)); len(es) != 1 {
				t.Errorf("single-file output left %d entries beside it", len(es))
			}
		})
	}
}

func TestApplySideFiles(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.ft1.path)
	out := filepath.Join(t.TempDir(), "out")
	wo := tasks.WriteOptions{SideFiles: map[string][]byte{"merge.yaml": []byte("method: ta\n"), "tokenizer.json": []byte("mine")}}
	if err := tasks.Apply(s, []float32{1}, out, wo, tasks.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"config.json": string(f.config), "merge.yaml": "method: ta\n", "tokenizer.json": "mine"} {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestApplyWrongCoefficients(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	for _, lams := range [][]float32{nil, {1}, {1, 1, 1}} {
		out := filepath.Join(t.TempDir(), "out")
		wantErr(t, tasks.Apply(s, lams, out, tasks.WriteOptions{}, tasks.StreamOptions{}), fmt.Sprintf("%d coefficients for 2", len(lams)))
		checkNoOutput(t, out)
	}
}

// TestWriteRefusesUnencodable: a result the output cannot hold (NaN, ±Inf,
// or beyond its dtype's range, which encoding would turn into ±Inf) is an
// error naming the tensor, and nothing is written, unless AllowNonfinite.
func TestWriteRefusesUnencodable(t *testing.T) {
	f := newFixture(t)
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name    string
		lambdas []float32
		dtype   checkpoint.DType
		want    []string
	}{
		// |τ| ≤ 200/64 here: 1e5·τ exceeds float16's 65504 in lm_head.
		{"beyond float16", []float32{1e5, 0}, 0, []string{`"lm_head.weight"`, "does not fit F16", "--dtype"}},
		{"beyond float16 everywhere", []float32{1e5, 0}, checkpoint.F16, []string{`"model.embed_tokens.weight"`, "does not fit F16"}},
		{"infinite coefficient", []float32{inf, 0}, 0, []string{`"model.embed_tokens.weight"`, "not finite"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			s := openSet(t, f.base.path, f.tv1, f.ft2.path)
			wantErr(t, tasks.Apply(s, tc.lambdas, out, tasks.WriteOptions{DType: tc.dtype}, tasks.StreamOptions{ChunkElems: 6}), tc.want...)
			checkNoOutput(t, out)
			s.AllowNonfinite = true
			if err := tasks.Apply(s, tc.lambdas, out, tasks.WriteOptions{DType: tc.dtype}, tasks.StreamOptions{ChunkElems: 6}); err != nil {
				t.Fatalf("with AllowNonfinite: %v", err)
			}
		})
	}
}

// Applying a task vector built by Build gives back the fine-tuned model.
func TestBuildThenApplyRoundTrip(t *testing.T) {
	f := newFixture(t)
	tv := filepath.Join(t.TempDir(), "tv")
	if err := tasks.Build(openSet(t, f.base.path, f.ft2.path), tv, tasks.WriteOptions{}, tasks.StreamOptions{ChunkElems: 3}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	if err := tasks.Apply(openSet(t, f.base.path, tv), []float32{1}, out, tasks.WriteOptions{}, tasks.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	c := mustOpen(t, out)
	for _, d := range floatDefs(defs) {
		if got := readRaw(t, c, d.name); !bytes.Equal(got, f.ft2.raw[d.name]) {
			t.Errorf("%q: %x, want ft2's %x", d.name, got, f.ft2.raw[d.name])
		}
	}
}

func TestCombine(t *testing.T) {
	taus := [][]float32{{1, -2, 0.5}, {0.25, 4, -8}}
	for _, tc := range []struct {
		name  string
		base  []float32
		w     []float32
		scale float32
		want  []float64
	}{
		{"no base", nil, []float32{1, 1}, 1, []float64{1.25, 2, -7.5}},
		{"base", []float32{10, 20, 30}, []float32{1, -1}, 1, []float64{10.75, 14, 38.5}},
		{"scaled", []float32{1, 1, 1}, []float32{2, 0.5}, 0.5, []float64{1 + 0.5*(2+0.125), 1 + 0.5*(-4+2), 1 + 0.5*(1-4)}},
		{"zero weights", []float32{3, 4, 5}, []float32{0, 0}, 7, []float64{3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float32, 3)
			tasks.Combine(dst, tc.base, taus, tc.w, tc.scale)
			for k := range dst {
				if float64(dst[k]) != tc.want[k] {
					t.Errorf("dst[%d] = %v, want %v", k, dst[k], tc.want[k])
				}
			}
		})
	}
}

func TestFloatNames(t *testing.T) {
	f := newFixture(t)
	if got, want := tasks.FloatNames(mustOpen(t, f.base.path)), defNames(floatDefs(defs)); !slices.Equal(got, want) {
		t.Errorf("FloatNames = %q, want %q", got, want)
	}
}

// Outputs are sharded as asked, and carry the caller's metadata.
func TestApplyShardedWithMetadata(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	out := filepath.Join(t.TempDir(), "out")
	wo := tasks.WriteOptions{DType: checkpoint.F32}
	wo.ShardSize = 100
	wo.Metadata = map[string]string{"editkit.recipe": "ta"}
	if err := tasks.Apply(s, []float32{0.5, -1.25}, out, wo, tasks.StreamOptions{ChunkElems: 4, Workers: 3}); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(out, "model-*-of-*.safetensors"))
	if len(shards) < 3 {
		t.Errorf("%d shards of at most 100 bytes, want several", len(shards))
	}
	c := mustOpen(t, out)
	want := combo([]map[string][]float64{f.tau(f.ft1), f.tau(f.ft2)}, []float64{0.5, -1.25})
	for name, v := range want {
		for k := range v {
			v[k] += f.base.vals[name][k]
		}
	}
	checkVals(t, c, want, checkpoint.F32)
	if got := names(c); !slices.Equal(got, defNames(defs)) {
		t.Errorf("tensors %q, want %q", got, defNames(defs))
	}
	if c.Metadata["editkit.recipe"] != "ta" || c.Metadata[tasks.KindKey] != tasks.KindModel {
		t.Errorf("metadata %v", c.Metadata)
	}
}

// The set's own paths are inputs that no output may overwrite, even with
// Force.
func TestWriteRefusesInputs(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1, f.ft2.path)
	before, err := os.ReadFile(f.tv1)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{f.tv1, f.base.path, filepath.Join(f.ft2.path, "inside"), f.dir} {
		wo := tasks.WriteOptions{}
		wo.Force = true
		if err := tasks.Apply(s, []float32{1, 1}, out, wo, tasks.StreamOptions{}); err == nil {
			t.Errorf("Apply wrote over input %s", out)
		}
		if err := tasks.WriteCombination(s, []float32{1, 1}, out, wo, tasks.StreamOptions{}); err == nil {
			t.Errorf("WriteCombination wrote over input %s", out)
		}
	}
	if after, _ := os.ReadFile(f.tv1); !bytes.Equal(after, before) {
		t.Error("an input changed")
	}
	if _, err := os.Stat(filepath.Join(f.base.path, "model.safetensors")); err != nil {
		t.Errorf("base damaged: %v", err)
	}
}

// A coefficient so large that θ_base + λτ overflows float32 is an error
// naming the tensor; with Saturate the infinities become the dtype's
// largest finite values, counted.
func TestApplyOverflow(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.tv1)
	out := filepath.Join(t.TempDir(), "huge")
	err := tasks.Apply(s, []float32{3e38}, out, tasks.WriteOptions{}, tasks.StreamOptions{})
	if err == nil || !strings.Contains(err.Error(), "overflowed") || !strings.Contains(err.Error(), "tensor") {
		t.Fatalf("error %v, want an overflow naming the tensor", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the failed apply left %s", out)
	}
	var n atomic.Int64
	wo := tasks.WriteOptions{}
	wo.Saturate, wo.Saturated = true, &n
	if err := tasks.Apply(s, []float32{3e38}, out, wo, tasks.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if n.Load() == 0 {
		t.Fatal("nothing saturated")
	}
	c := mustOpen(t, out)
	for _, name := range names(c) {
		if info, _ := c.Tensor(name); !checkpoint.IsFloat(info.DType) {
			continue
		}
		for _, v := range readVals(t, c, name) {
			if math.IsInf(v, 0) || math.IsNaN(v) {
				t.Fatalf("%s: %v written despite Saturate", name, v)
			}
		}
	}
}
