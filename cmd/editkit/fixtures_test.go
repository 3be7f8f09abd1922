package main

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlpodyssey/safetensors"

	"github.com/editkit/editkit/checkpoint"
)

// Test checkpoints: a small ViT-like layout (so block detection finds two
// blocks) mixing BF16 and F32 float tensors with an I64 tensor that must
// pass through every command unchanged.
var fixtureTensors = []checkpoint.TensorSpec{
	{Name: "vit.embeddings.patch_embeddings.projection.weight", DType: checkpoint.BF16, Shape: []int64{4, 6}},
	{Name: "vit.embeddings.position_ids", DType: i64, Shape: []int64{1, 5}},
	{Name: "vit.encoder.layer.0.attention.weight", DType: checkpoint.BF16, Shape: []int64{6, 6}},
	{Name: "vit.encoder.layer.0.attention.bias", DType: checkpoint.F32, Shape: []int64{6}},
	{Name: "vit.encoder.layer.1.attention.weight", DType: checkpoint.BF16, Shape: []int64{6, 6}},
	{Name: "vit.encoder.layer.1.output.bias", DType: checkpoint.F32, Shape: []int64{6}},
	{Name: "classifier.weight", DType: checkpoint.F32, Shape: []int64{3, 6}},
}

const i64 = safetensors.I64

// fixtureShard makes every generated checkpoint span several shards.
const fixtureShard = 160

// model holds a checkpoint's values as the test generated them: float
// tensors already rounded to their dtype (so they are exactly what is on
// disk), integer tensors as int64.
type model struct {
	floats map[string][]float64
	ints   map[string][]int64
	// shapes overrides fixtureTensors' shapes (for the mismatch test).
	shapes map[string][]int64
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// roundTo rounds v to what dtype dt stores.
func roundTo(dt checkpoint.DType, v float64) float64 {
	raw, err := checkpoint.EncodeFloat32(dt, []float32{float32(v)}, nil)
	if err != nil {
		panic(err)
	}
	out, err := checkpoint.DecodeFloat32(dt, raw, nil)
	if err != nil {
		panic(err)
	}
	return float64(out[0])
}

// baseModel draws the pre-trained weights.
func baseModel(seed uint64) *model {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &model{floats: map[string][]float64{}, ints: map[string][]int64{}}
	for _, s := range fixtureTensors {
		n := numel(s.Shape)
		if s.DType == i64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(i) + 1<<40 // beyond float32's exact integers
			}
			m.ints[s.Name] = v
			continue
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = roundTo(s.DType, r.NormFloat64())
		}
		m.floats[s.Name] = v
	}
	return m
}

// finetune draws a fine-tuned model: base plus a small random update.
func finetune(base *model, seed uint64) *model {
	r := rand.New(rand.NewPCG(seed, 2))
	m := &model{floats: map[string][]float64{}, ints: base.ints}
	for _, s := range fixtureTensors {
		b, ok := base.floats[s.Name]
		if !ok {
			continue
		}
		v := make([]float64, len(b))
		for i := range v {
			v[i] = roundTo(s.DType, b[i]+0.1*r.NormFloat64())
		}
		m.floats[s.Name] = v
	}
	return m
}

// clone copies m so a test can alter it.
func (m *model) clone() *model {
	c := &model{floats: map[string][]float64{}, ints: m.ints, shapes: map[string][]int64{}}
	for k, v := range m.floats {
		c.floats[k] = append([]float64(nil), v...)
	}
	return c
}

// write saves m as a sharded checkpoint folder.
func (m *model) write(t *testing.T, dir string) {
	t.Helper()
	specs := make([]checkpoint.TensorSpec, len(fixtureTensors))
	copy(specs, fixtureTensors)
	for i := range specs {
		if s, ok := m.shapes[specs[i].Name]; ok {
			specs[i].Shape = s
		}
	}
	w, err := checkpoint.Create(dir, specs, checkpoint.WriteOptions{ShardSize: fixtureShard})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, s := range specs {
		var raw []byte
		if s.DType == i64 {
			for _, v := range m.ints[s.Name] {
				raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
			}
		} else {
			vals := m.floats[s.Name]
			f := make([]float32, numel(s.Shape))
			for i := range f {
				f[i] = float32(vals[i%len(vals)])
			}
			if raw, err = checkpoint.EncodeFloat32(s.DType, f, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Write(s.Name, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "model-*.safetensors")); len(files) < 2 {
		t.Fatalf("fixture %s is not sharded (%d shard files)", dir, len(files))
	}
}

// readFloats reads a float tensor of a written checkpoint as float64.
func readFloats(t *testing.T, path, name string) ([]float64, checkpoint.DType) {
	t.Helper()
	c, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, ok := c.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", path, name)
	}
	v, _, err := c.ReadFloat32(name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, info.DType
}

// readRaw reads a tensor's bytes; ok is false when the tensor is absent.
func readRaw(t *testing.T, path, name string) ([]byte, bool) {
	t.Helper()
	c, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.Tensor(name); !ok {
		return nil, false
	}
	raw, err := c.ReadRaw(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw, true
}

// checkClose compares got with want within the rounding of dtype dt (and
// of float32 arithmetic).
func checkClose(t *testing.T, what, name string, dt checkpoint.DType, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: tensor %q has %d values, want %d", what, name, len(got), len(want))
	}
	rel := 1e-5
	switch dt {
	case checkpoint.BF16:
		rel = 1.0 / 256
	case checkpoint.F16:
		rel = 1.0 / 2048
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > rel*math.Abs(want[i])+1e-6 {
			t.Fatalf("%s: tensor %q [%d] = %v, want %v (±%g relative for %s)", what, name, i, got[i], want[i], rel, dt)
		}
	}
}

// copyDir copies a checkpoint folder (flat).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
