package models

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Weights maps checkpoint tensor names to float32 host tensors: the weights
// of one model, e.g. as read from a checkpoint or a merge.
type Weights map[string]*tensors.Tensor

// Params maps checkpoint tensor names to the graph nodes that carry them in
// one graph: what a model's forward function reads its weights from.
type Params map[string]*graph.Node

// Get returns the named weight's node; it panics (inside graph building,
// where GoMLX turns panics into errors) when the weight is not bound.
func (p Params) Get(name string) *graph.Node {
	n, ok := p[name]
	if !ok || n == nil {
		panic(fmt.Errorf("models: weight %q is not bound", name))
	}
	return n
}

// Opt returns the named weight's node, or nil when it is not bound.
func (p Params) Opt(name string) *graph.Node { return p[name] }

// Linear returns the linear layer prefix.weight, prefix.bias (the bias may
// be absent).
func (p Params) Linear(prefix string) LinearW {
	return LinearW{Weight: p.Get(prefix + ".weight"), Bias: p.Opt(prefix + ".bias")}
}

// Norm returns the LayerNorm prefix.weight, prefix.bias.
func (p Params) Norm(prefix string) NormW {
	return NormW{Weight: p.Get(prefix + ".weight"), Bias: p.Get(prefix + ".bias")}
}

// Spec declares a float32 weight by checkpoint name and shape; a model's
// list of specs drives loading (which tensors, checked shapes), random
// initialisation and saving.
func Spec(name string, shape ...int) checkpoint.TensorSpec {
	s := checkpoint.TensorSpec{Name: name, DType: checkpoint.F32, Shape: make([]int64, len(shape))}
	for i, d := range shape {
		s.Shape[i] = int64(d)
	}
	return s
}

func dims(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

// sameUpToOnes reports whether two shapes hold the same elements in the same
// order: equal once their size-1 axes are dropped ([1, 1, w] and [w], [] and
// [1]).
func sameUpToOnes(a, b []int) bool {
	drop := func(s []int) []int {
		return slices.DeleteFunc(slices.Clone(s), func(d int) bool { return d == 1 })
	}
	return slices.Equal(drop(a), drop(b))
}

// ReadWeights reads the tensors named by specs from c as float32 (F16, BF16
// and F64 are converted on the host), checking each shape. A stored shape that
// differs only by size-1 axes ([1, 1, w] for [w], [1] for a scalar) is
// reshaped to the spec's. Tensors of c that no spec names are ignored, except
// those of blocks past the model's last (see checkUnusedBlocks).
func ReadWeights(c *checkpoint.Checkpoint, specs []checkpoint.TensorSpec) (Weights, error) {
	var missing []string
	for _, s := range specs {
		if _, ok := c.Tensor(s.Name); !ok {
			missing = append(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %d of the model's %d tensors: %s", c.Path, len(missing), len(specs), listNames(missing, 4))
	}
	if err := checkUnusedBlocks(c, specs); err != nil {
		return nil, err
	}
	w := make(Weights, len(specs))
	var raw []byte
	for _, s := range specs {
		info, _ := c.Tensor(s.Name)
		want := dims(s.Shape)
		if got := dims(info.Shape); !sameUpToOnes(got, want) {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, the model wants %v (does the config match the checkpoint?)", c.Path, s.Name, got, want)
		}
		if !checkpoint.IsFloat(info.DType) {
			return nil, fmt.Errorf("%s: tensor %q has dtype %s, not a float type", c.Path, s.Name, info.DType)
		}
		t := tensors.FromShape(shapes.Make(dtypes.Float32, want...))
		var err error
		tensors.MustMutableFlatData(t, func(flat []float32) {
			var out []float32
			out, raw, err = c.ReadFloat32(s.Name, raw, flat)
			if err == nil && len(out) > 0 && &out[0] != &flat[0] {
				copy(flat, out)
			}
		})
		if err != nil {
			return nil, err
		}
		w[s.Name] = t
	}
	return w, nil
}

// Check reports the first weight that specs name and w lacks or holds with
// another shape.
func (w Weights) Check(specs []checkpoint.TensorSpec) error {
	var missing []string
	for _, s := range specs {
		t, ok := w[s.Name]
		if !ok || t == nil {
			missing = append(missing, s.Name)
			continue
		}
		if want := dims(s.Shape); t.DType() != dtypes.Float32 || !slices.Equal(t.Shape().Dimensions, want) {
			return fmt.Errorf("weight %q is %s, the model wants float32%v", s.Name, t.Shape(), want)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %d of the model's %d weights: %s", len(missing), len(specs), listNames(missing, 4))
	}
	return nil
}

// Float32 returns a copy of the named weight's values, or nil when absent.
func (w Weights) Float32(name string) []float32 {
	t, ok := w[name]
	if !ok {
		return nil
	}
	return tensors.MustCopyFlatData[float32](t)
}

// Save writes the weights that specs name, in the specs' order, as a
// checkpoint at out (a .safetensors file or a folder, see checkpoint.Create)
// with the side files given (e.g. "config.json"; folder outputs only).
// Each tensor is written in its spec's dtype.
func (w Weights) Save(out string, specs []checkpoint.TensorSpec, sideFiles map[string][]byte, opts checkpoint.WriteOptions) error {
	if err := w.Check(specs); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if len(sideFiles) > 0 && strings.HasSuffix(out, ".safetensors") {
		return fmt.Errorf("writing %s: side files (%s) need a folder output, not a .safetensors file", out, strings.Join(sortedKeys(sideFiles), ", "))
	}
	wr, err := checkpoint.Create(out, specs, opts)
	if err != nil {
		return err
	}
	for _, s := range specs {
		if err := wr.WriteFloat32(s.Name, tensors.MustCopyFlatData[float32](w[s.Name])); err != nil {
			wr.Abort()
			return err
		}
	}
	for _, name := range sortedKeys(sideFiles) {
		if err := wr.AddFile(name, sideFiles[name]); err != nil {
			wr.Abort()
			return err
		}
	}
	return wr.Commit()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// blockIndex finds a name's first numeric component, the block index of
// every naming editkit reads ("encoder.layer.3.", "model.layers.3.",
// "visual.transformer.resblocks.3.", "h.3.").
var blockIndex = regexp.MustCompile(`(?:^|\.)(\d+)(?:\.|$)`)

// blockKind returns a name with its block index replaced by "#", and the
// index; ok is false for names outside blocks.
func blockKind(name string) (kind string, index int, ok bool) {
	m := blockIndex.FindStringSubmatchIndex(name)
	if m == nil {
		return "", 0, false
	}
	i, err := strconv.Atoi(name[m[2]:m[3]])
	if err != nil {
		return "", 0, false
	}
	return name[:m[2]] + "#" + name[m[3]:], i, true
}

// checkUnusedBlocks refuses a checkpoint that holds a block tensor the
// model uses in its own blocks, at a block index past the model's last: a
// config.json giving fewer layers than the checkpoint holds would otherwise
// run a truncated model without a word. Other unused tensors (a CLIP text
// tower when only the image tower is read, a classifier, buffers) are not
// block tensors of the model and stay ignored.
func checkUnusedBlocks(c *checkpoint.Checkpoint, specs []checkpoint.TensorSpec) error {
	blocks := map[string]int{} // kind → blocks the model has
	for _, s := range specs {
		if k, i, ok := blockKind(s.Name); ok {
			blocks[k] = max(blocks[k], i+1)
		}
	}
	var unused []string
	have, held := 0, 0
	for _, t := range c.Tensors() {
		k, i, ok := blockKind(t.Name)
		if n, used := blocks[k]; ok && used && i >= n {
			unused = append(unused, checkpoint.ShortName(t.Name))
			have, held = n, max(held, i+1)
		}
	}
	if len(unused) == 0 {
		return nil
	}
	slices.Sort(unused)
	return fmt.Errorf("%s holds %d tensors of blocks the model's configuration does not have (it has %d blocks, the checkpoint at least %d), which would go unused: %s; does config.json's layer count (num_hidden_layers) match the checkpoint?",
		c.Path, len(unused), have, held, listNames(unused, 4))
}

func listNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// WeightsScope is the absolute context scope where ToContext stores weights.
const WeightsScope = "/weights"

// ToContext stores w in ctx as one variable per tensor, in WeightsScope and
// named by the checkpoint names, so that context-based code (training,
// context.Exec) reads them through ContextParams. An existing variable gets
// the new tensor, which must have its shape; the tensor it held is left to
// its other owners, not freed. The variables share w's tensors.
func (w Weights) ToContext(ctx *context.Context) error {
	scoped := ctx.InAbsPath(WeightsScope).Checked(false)
	for _, name := range sortedKeys(w) {
		t := w[name]
		if strings.Contains(name, context.ScopeSeparator) {
			return fmt.Errorf("weight %q: names with %q cannot be context variables", name, context.ScopeSeparator)
		}
		if v := ctx.GetVariableByScopeAndName(WeightsScope, name); v != nil {
			if !v.Shape().Equal(t.Shape()) {
				return fmt.Errorf("weight %q: context variable is %s, new value is %s", name, v.Shape(), t.Shape())
			}
			if err := v.SetValuePreservingOld(t); err != nil {
				return err
			}
			continue
		}
		scoped.VariableWithValue(name, t)
	}
	return nil
}

// ContextParams returns the graph nodes of the weight variables that specs
// name, from WeightsScope of ctx (see ToContext). It is for graph building
// and panics when a variable is missing.
func ContextParams(ctx *context.Context, g *graph.Graph, specs []checkpoint.TensorSpec) Params {
	p := make(Params, len(specs))
	for _, s := range specs {
		v := ctx.GetVariableByScopeAndName(WeightsScope, s.Name)
		if v == nil {
			panic(fmt.Errorf("models: context has no variable %q in scope %q (call Weights.ToContext first)", s.Name, WeightsScope))
		}
		p[s.Name] = v.ValueGraph(g)
	}
	return p
}

// WeightsFromContext reads the weight variables that specs name back from
// ctx (e.g. to save a fine-tuned model).
func WeightsFromContext(ctx *context.Context, specs []checkpoint.TensorSpec) (Weights, error) {
	w := make(Weights, len(specs))
	for _, s := range specs {
		v := ctx.GetVariableByScopeAndName(WeightsScope, s.Name)
		if v == nil {
			return nil, fmt.Errorf("context has no variable %q in scope %q", s.Name, WeightsScope)
		}
		t, err := v.Value()
		if err != nil {
			return nil, fmt.Errorf("variable %q: %w", s.Name, err)
		}
		w[s.Name] = t
	}
	return w, w.Check(specs)
}

// Finalize frees the tensors' memory now rather than at garbage
// collection; w must not be used afterwards.
func (w Weights) Finalize() {
	for _, t := range w {
		t.FinalizeAll()
	}
}
