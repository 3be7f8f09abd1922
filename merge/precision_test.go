package merge

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// TestDTypeIsThePrecision merges float32 checkpoints with dtype: bfloat16
// and out_dtype: float32: mergekit converts the inputs to bfloat16 and
// computes there, so every result is a bfloat16 value, the one a bfloat16
// computation of θ_0 + λ Σ_t w_t (θ_t − θ_0) gives (the reference rounds
// after each operation, as PyTorch does); a float32 merge differs.
func TestDTypeIsThePrecision(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := rand.New(rand.NewPCG(8, 8))
	const n = 512
	vals := map[string][]float64{}
	write := func(name string, base []float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = r.Float64()*2 - 1
			if base != nil {
				v[i] = base[i] + (r.Float64()*2-1)*0.05
			}
			v[i] = float64(float32(v[i]))
		}
		w, err := checkpoint.Create(name, []checkpoint.TensorSpec{{Name: "model.layers.0.w", DType: checkpoint.F32, Shape: []int64{n}}}, checkpoint.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float32, n)
		for i, x := range v {
			f[i] = float32(x)
		}
		if err := w.WriteFloat32("model.layers.0.w", f); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		vals[name] = v
		return v
	}
	b := write("base", nil)
	write("a", b)
	write("c", b)
	yml := "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 0.3}}\n  - {model: c, parameters: {weight: 0.7}}\nparameters: {lambda: 0.9}\n"
	merge := func(extra, out string) []float32 {
		plan, err := ParseMergekitYAML([]byte(yml+extra), "c.yaml")
		if err != nil {
			t.Fatal(err)
		}
		prep, err := plan.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer prep.Close()
		wo := tasks.WriteOptions{DType: prep.OutDType}
		if _, err := Run(prep.Set, &prep.Config, out, wo, tasks.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		c, err := checkpoint.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if ti, _ := c.Tensor("model.layers.0.w"); ti.DType != checkpoint.F32 {
			t.Errorf("%s: output dtype %s, want F32", out, ti.DType)
		}
		v, _, err := c.ReadFloat32("model.layers.0.w", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	bf := merge("dtype: bfloat16\nout_dtype: float32\n", filepath.Join(dir, "bf16"))
	f32 := merge("", filepath.Join(dir, "f32"))
	q := func(x float64) float64 { return quantize([]float64{x}, checkpoint.BF16)[0] }
	differ := 0
	for i := range n {
		b0 := q(vals["base"][i])
		ta, tc := q(q(vals["a"][i])-b0), q(q(vals["c"][i])-b0)
		delta := q(0.3*ta + 0.7*tc)
		want := q(b0 + q(0.9*delta))
		if got := float64(bf[i]); math.Abs(got-want) > ulpBF16(math.Max(math.Abs(want), math.Abs(b0))) {
			t.Fatalf("entry %d: %v, want %v", i, got, want)
		}
		if got := float64(bf[i]); got != q(got) {
			t.Fatalf("entry %d: %v is not a bfloat16 value", i, got)
		}
		if float64(f32[i]) != float64(bf[i]) {
			differ++
		}
	}
	if differ < n/2 {
		t.Errorf("only %d of %d entries differ between the bfloat16 and the float32 merge", differ, n)
	}
}
