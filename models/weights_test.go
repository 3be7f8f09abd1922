package models

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// writeCheckpoint writes raw tensors (float data encoded in each dtype).
func writeCheckpoint(t *testing.T, specs []checkpoint.TensorSpec, data map[string][]float32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.safetensors")
	w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if s.DType == checkpoint.I64 {
			if err := w.Write(s.Name, make([]byte, s.Bytes())); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := w.WriteFloat32(s.Name, data[s.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadWeights(t *testing.T) {
	stored := []checkpoint.TensorSpec{
		{Name: "a", DType: checkpoint.F32, Shape: []int64{2, 3}},
		{Name: "b", DType: checkpoint.BF16, Shape: []int64{3}},
		{Name: "h", DType: checkpoint.F16, Shape: []int64{2}},
		{Name: "s", DType: checkpoint.F32, Shape: []int64{1}},
		{Name: "cls", DType: checkpoint.F32, Shape: []int64{1, 1, 2}},
		{Name: "ids", DType: checkpoint.I64, Shape: []int64{2}},
	}
	data := map[string][]float32{"a": {1, 2, 3, 4, 5, 6}, "b": {1.5, -2, 1.0 / 3}, "h": {0.1, 6e4}, "s": {2.5}, "cls": {7, 8}}
	ck, err := checkpoint.Open(writeCheckpoint(t, stored, data))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	w, err := ReadWeights(ck, []checkpoint.TensorSpec{Spec("a", 2, 3), Spec("b", 3), Spec("h", 2), Spec("s"), Spec("cls", 2)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dims []int
	}{{"a", []int{2, 3}}, {"b", []int{3}}, {"h", []int{2}}, {"s", nil}, {"cls", []int{2}}} {
		raw, _ := ck.ReadRaw(tc.name, nil)
		info, _ := ck.Tensor(tc.name)
		want, _ := checkpoint.DecodeFloat32(info.DType, raw, nil) // as stored: BF16 and F16 rounded
		if got := w.Float32(tc.name); !slices.Equal(got, want) || !slices.Equal(w[tc.name].Shape().Dimensions, tc.dims) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, w[tc.name].Shape(), want, tc.dims)
		}
	}
	if b := w.Float32("b"); b[2] == 1.0/3 || b[2] != 0.333984375 {
		t.Errorf("BF16 1/3 read as %v, want its bfloat16 rounding 0.333984375", b[2])
	}
	for _, tc := range []struct {
		name  string
		specs []checkpoint.TensorSpec
		err   string
	}{
		{"missing", []checkpoint.TensorSpec{Spec("a", 2, 3), Spec("nope", 1), Spec("nope2", 1)}, "lacks 2 of the model's 3 tensors: nope, nope2"},
		{"shape", []checkpoint.TensorSpec{Spec("a", 3, 2)}, `"a" has shape [2 3], the model wants [3 2]`},
		{"not float", []checkpoint.TensorSpec{Spec("ids", 2)}, "not a float type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadWeights(ck, tc.specs); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
	if err := w.Check([]checkpoint.TensorSpec{Spec("a", 6)}); err == nil {
		t.Error("Check accepted a [2 3] weight for a [6] spec")
	}
	if err := w.Check([]checkpoint.TensorSpec{Spec("zz", 6)}); err == nil || !strings.Contains(err.Error(), "zz") {
		t.Errorf("Check of a missing weight: %v", err)
	}
}

func TestSaveSideFiles(t *testing.T) {
	w := RandomWeights([]checkpoint.TensorSpec{Spec("x", 2)}, 1, func(checkpoint.TensorSpec) Init { return Normal(1) })
	err := w.Save(filepath.Join(t.TempDir(), "m.safetensors"), []checkpoint.TensorSpec{Spec("x", 2)}, map[string][]byte{"config.json": []byte("{}")}, checkpoint.WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("side files with a file output: %v", err)
	}
	w2 := RandomWeights([]checkpoint.TensorSpec{Spec("x", 2)}, 1, func(checkpoint.TensorSpec) Init { return Normal(1) })
	w3 := RandomWeights([]checkpoint.TensorSpec{Spec("x", 2)}, 2, func(checkpoint.TensorSpec) Init { return Normal(1) })
	if !slices.Equal(w.Float32("x"), w2.Float32("x")) || slices.Equal(w.Float32("x"), w3.Float32("x")) {
		t.Error("RandomWeights is not a function of the seed")
	}
}

func TestContextBinding(t *testing.T) {
	specs := []checkpoint.TensorSpec{Spec("lin.weight", 2, 3), Spec("lin.bias", 2)}
	w1 := RandomWeights(specs, 1, func(checkpoint.TensorSpec) Init { return Normal(1) })
	w2 := RandomWeights(specs, 2, func(checkpoint.TensorSpec) Init { return Normal(1) })
	ctx := context.New()
	if err := w1.ToContext(ctx); err != nil {
		t.Fatal(err)
	}
	exec, err := context.NewExec(Backend(), ctx, func(ctx *context.Context, x *graph.Node) *graph.Node {
		return Linear(x, ContextParams(ctx, x.Graph(), specs).Linear("lin"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	x := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 1, 3)
	f, err := NewFunc(Backend(), "lin", specs, func(p Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{Linear(in[0], p.Linear("lin"))}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []Weights{w1, w2} {
		if err := w.ToContext(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Exec(x)
		if err != nil {
			t.Fatal(err)
		}
		want, err := f.Call(w, x)
		if err != nil {
			t.Fatal(err)
		}
		if g, wt := tensors.MustCopyFlatData[float32](got[0]), tensors.MustCopyFlatData[float32](want[0]); !slices.Equal(g, wt) {
			t.Errorf("context %v, graph inputs %v", g, wt)
		}
	}
	if n := f.Builds(); n != 1 {
		t.Errorf("%d graph builds for two weight sets, want 1", n)
	}
	// w1's tensors survive rebinding (SetValue would have freed them).
	if v := w1.Float32("lin.bias"); len(v) != 2 {
		t.Errorf("w1 lost its tensor: %v", v)
	}
	back, err := WeightsFromContext(ctx, specs)
	if err != nil || !slices.Equal(back.Float32("lin.weight"), w2.Float32("lin.weight")) {
		t.Errorf("WeightsFromContext: %v", err)
	}
	bad := Weights{"lin.bias": tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3)}
	if err := bad.ToContext(ctx); err == nil || !strings.Contains(err.Error(), "lin.bias") {
		t.Errorf("rebinding with another shape: %v", err)
	}
	// A batch of another size builds a second graph; the same size reuses it.
	for _, rows := range []int{2, 2, 1} {
		if _, err := f.Call(w1, tensors.FromFlatDataAndDimensions(make([]float32, 3*rows), rows, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.Builds(); n != 2 {
		t.Errorf("%d graph builds for batches of 1 and 2 rows, want 2", n)
	}
	if _, err := f.Call(Weights{}, x); err == nil || !strings.Contains(err.Error(), "missing 2") {
		t.Errorf("Call without weights: %v", err)
	}
}

func TestNewBackend(t *testing.T) {
	for _, tc := range []struct {
		config   string
		fallback bool
	}{
		{"", false},
		{DefaultBackend, false},
		{"go", false},
		{"go:bogus_option", true},
		{"nosuchbackend", true},
		{"xla:/nonexistent/pjrt_c_api_cpu_plugin.so", true},
	} {
		t.Run(tc.config, func(t *testing.T) {
			var msg bytes.Buffer
			b, err := NewBackend(tc.config, &msg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Finalize()
			if !strings.Contains(b.Name(), "go") {
				t.Errorf("backend %s, want the pure-Go one", b.Name())
			}
			if got := msg.Len() > 0; got != tc.fallback {
				t.Errorf("fallback message %q, want one: %v", msg.String(), tc.fallback)
			}
			if tc.fallback && (!strings.Contains(msg.String(), tc.config) || !strings.Contains(msg.String(), "falling back")) {
				t.Errorf("message %q does not name %q and the fallback", msg.String(), tc.config)
			}
		})
	}
}

func TestPixels(t *testing.T) {
	if p, err := Pixels(make([]float32, 2*4*5*3), 2, 4, 5); err != nil || !slices.Equal(p.Shape().Dimensions, []int{2, 4, 5, 3}) {
		t.Errorf("Pixels: %v, %v", p, err)
	}
	if _, err := Pixels(make([]float32, 10), 2, 4, 5); err == nil {
		t.Error("Pixels accepted 10 values for 2 images of 4x5x3")
	}
}

func TestExactFloat32(t *testing.T) {
	for _, tc := range []struct {
		config, flags   string // flags: XLA_FLAGS before ("-" for unset)
		wantFlags, tf32 string // after; tf32: NVIDIA_TF32_OVERRIDE after ("-" for unset)
	}{
		{"xla:/p.so", "-", "--xla_gpu_enable_triton_gemm=false", "0"},
		{"xla:cuda", "--xla_foo=1", "--xla_foo=1 --xla_gpu_enable_triton_gemm=false", "0"},
		{"xla:cuda", "--xla_gpu_enable_triton_gemm=true", "--xla_gpu_enable_triton_gemm=true", "0"},
		{"xla:/p.so,tf32", "-", "-", "-"},
		{"go:ops_sequential", "-", "-", "-"},
	} {
		t.Run(tc.config+" "+tc.flags, func(t *testing.T) {
			t.Setenv("XLA_FLAGS", "")
			t.Setenv("NVIDIA_TF32_OVERRIDE", "")
			os.Unsetenv("NVIDIA_TF32_OVERRIDE")
			if tc.flags == "-" {
				os.Unsetenv("XLA_FLAGS")
			} else {
				os.Setenv("XLA_FLAGS", tc.flags)
			}
			exactFloat32(tc.config)
			get := func(k string) string {
				if v, ok := os.LookupEnv(k); ok {
					return v
				}
				return "-"
			}
			if got := get("XLA_FLAGS"); got != tc.wantFlags {
				t.Errorf("XLA_FLAGS %q, want %q", got, tc.wantFlags)
			}
			if got := get("NVIDIA_TF32_OVERRIDE"); got != tc.tf32 {
				t.Errorf("NVIDIA_TF32_OVERRIDE %q, want %q", got, tc.tf32)
			}
		})
	}
}
