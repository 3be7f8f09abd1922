package linearize

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/llama"
)

// refModel is a model under test: its forward function over explicit
// weights, its weights (float32) and an input.
type refModel struct {
	name  string
	f     models.ForwardFn
	specs []checkpoint.TensorSpec
	w     models.Weights
	input *tensors.Tensor
}

// refCases are the tiny random models that tools/torchref wrote into
// models/testdata: a Hugging Face ViT, CLIP image towers in Hugging Face and
// OpenAI naming, and a LLaMA.
var refCases = []string{"hf-vit", "hf-clip", "openai-clip", "llama-gqa"}

// modelsTestdata is the checkpoint of a reference case (the OpenAI-named
// CLIP is a lone .safetensors file with its config beside it).
func modelsTestdata(name string) string {
	if name == "openai-clip" {
		return filepath.Join("..", "models", "testdata", name, "open_clip_model.safetensors")
	}
	return filepath.Join("..", "models", "testdata", name)
}

func loadRef(t testing.TB, name string) refModel {
	t.Helper()
	if strings.HasPrefix(name, "llama") {
		m, err := llama.Load(modelsTestdata(name))
		if err != nil {
			t.Fatal(err)
		}
		c := m.Config
		ids := make([]int32, 2*5)
		for i := range ids {
			ids[i] = int32((7*i + 3) % c.VocabSize)
		}
		return refModel{name: name, specs: c.Specs(), w: m.Weights,
			input: tensors.FromFlatDataAndDimensions(ids, 2, 5),
			f: func(p models.Params, in []*graph.Node) []*graph.Node {
				return []*graph.Node{llama.Forward(c, p, in[0], llama.Options{}).Logits}
			}}
	}
	enc, err := encoder.Load(modelsTestdata(name))
	if err != nil {
		t.Fatal(err)
	}
	ref := readRef(t, name)
	return refModel{name: name, specs: enc.Specs, w: enc.Weights, input: ref.pixels, f: encoderFn(enc)}
}

func encoderFn(enc *encoder.Encoder) models.ForwardFn {
	return func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{enc.Forward(p, in[0])}
	}
}

// jvpRef is a case of linearize/testdata (tools/torchref/jvp.py).
type jvpRef struct {
	pixels      *tensors.Tensor
	direction   models.Weights
	primal, jvp []float32
}

func readRef(t testing.TB, name string) jvpRef {
	t.Helper()
	path := filepath.Join("testdata", name+".safetensors")
	ck, err := checkpoint.Open(path)
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 tools/torchref/jvp.py)", err)
	}
	defer ck.Close()
	r := jvpRef{direction: models.Weights{}}
	for _, info := range ck.Tensors() {
		data, _, err := ck.ReadFloat32(info.Name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		dims := make([]int, len(info.Shape))
		for i, d := range info.Shape {
			dims[i] = int(d)
		}
		switch {
		case info.Name == "pixel_values":
			r.pixels = tensors.FromFlatDataAndDimensions(data, dims...)
		case info.Name == "primal":
			r.primal = data
		case info.Name == "jvp":
			r.jvp = data
		case strings.HasPrefix(info.Name, "direction/"):
			r.direction[strings.TrimPrefix(info.Name, "direction/")] = tensors.FromFlatDataAndDimensions(data, dims...)
		}
	}
	return r
}

// randomDirection draws, per tensor, N(0, (scale·rms(w))²) entries.
func randomDirection(specs []checkpoint.TensorSpec, w models.Weights, scale float64, seed uint64) models.Weights {
	rng := rand.New(rand.NewPCG(seed, 11))
	d := make(models.Weights, len(specs))
	for _, s := range specs {
		vals := w.Float32(s.Name)
		rms := 0.0
		for _, v := range vals {
			rms += float64(v) * float64(v)
		}
		rms = max(math.Sqrt(rms/float64(len(vals))), 1e-3)
		out := make([]float32, len(vals))
		for i := range out {
			out[i] = float32(scale * rms * rng.NormFloat64())
		}
		d[s.Name] = tensors.FromFlatDataAndDimensions(out, w[s.Name].Shape().Dimensions...)
	}
	return d
}

// to64 converts float32 weights to float64 tensors.
func to64(w models.Weights) map[string]*tensors.Tensor {
	out := make(map[string]*tensors.Tensor, len(w))
	for name, t := range w {
		out[name] = tensors.FromFlatDataAndDimensions(f64(w.Float32(name)), t.Shape().Dimensions...)
	}
	return out
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// inputs64 converts a float32 input to float64 (integer inputs stay).
func input64(t *tensors.Tensor) *tensors.Tensor {
	if t.DType().IsFloat() {
		return tensors.FromFlatDataAndDimensions(f64(tensors.MustCopyFlatData[float32](t)), t.Shape().Dimensions...)
	}
	return t
}

// run64 builds and runs a graph of named float64 weight groups and one
// input: build gets one Params per group (in order), the input node, and
// returns the outputs, copied to the host as float64.
func run64(t testing.TB, specs []checkpoint.TensorSpec, groups []map[string]*tensors.Tensor, input *tensors.Tensor,
	build func(ps []models.Params, in *graph.Node) []*graph.Node) [][]float64 {
	t.Helper()
	exec, err := graph.NewExec(models.Backend(), func(all []*graph.Node) []*graph.Node {
		ps := make([]models.Params, len(groups))
		k := 0
		for i := range groups {
			ps[i] = models.Params{}
			for _, s := range specs {
				ps[i][s.Name] = all[k]
				k++
			}
		}
		return build(ps, all[k])
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	var args []any
	for _, g := range groups {
		for _, s := range specs {
			args = append(args, g[s.Name])
		}
	}
	args = append(args, input)
	outs, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float64, len(outs))
	for i, o := range outs {
		res[i] = tensors.MustCopyFlatData[float64](o)
	}
	return res
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

func maxDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}
