package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// Prepared is a configuration's merge ready to run: Run(p.Set, &p.Config,
// out, ...) with p.SideFiles and p.Inputs in the write options.
type Prepared struct {
	Set    *tasks.Set
	Config Config
	// SideFiles replace the base's files in the output: config.json with
	// the output's layer count, vocabulary size and dtype, and the tokenizer
	// files when the vocabulary is rebuilt.
	SideFiles map[string][]byte
	// Inputs are every checkpoint the merge reads, which the output must not
	// overwrite, and InputSizes their sizes in bytes.
	Inputs     []string
	InputSizes []int64
	// OutDType is the output's float dtype (0: the base's).
	OutDType checkpoint.DType
	// Layers is the output's number of layers when the configuration
	// restacks them (slices), else 0.
	Layers int
	// Warnings are what the output lacks that a loader may need, each a
	// sentence for the user.
	Warnings []string

	vocabSize int // the rebuilt vocabulary's size, 0 when unchanged
	closers   []func() error
}

// Close closes the checkpoints and removes temporary files.
func (p *Prepared) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// tensorSource says where one output tensor comes from.
type tensorSource struct {
	slice int
	// t is the tensor's position in its slice's layers for gradients: the
	// layer offset over the slice's layers − 1 (1 for a one-layer slice), 0
	// outside the layers.
	t float64
	// in holds each member's input tensor name (filters of per-model
	// parameters match it, as mergekit matches the source's name).
	in []string
}

// yamlTensorwise evaluates a configuration's per-tensor parameters.
type yamlTensorwise struct {
	plan    *YAMLPlan
	vary    map[string]bool
	sources map[string]*tensorSource
}

func (y *yamlTensorwise) varies(param string) bool { return y.vary[param] }

// value looks the parameter up as mergekit's ConfigReader does: the
// member's source parameters, the slice's, then the top level, each
// evaluated at the tensor; a condition list that matches nothing falls
// through to the next level.
func (y *yamlTensorwise) value(param string, member int, tensor string) (any, bool) {
	ts := y.sources[tensor]
	if ts == nil {
		return nil, false
	}
	sl := y.plan.Slices[ts.slice]
	name := tensor
	var levels []map[string]*setting
	if member >= 0 {
		name = ts.in[member]
		levels = append(levels, y.plan.Members(ts.slice)[member].params)
	}
	levels = append(levels, sl.params, y.plan.top)
	for _, l := range levels {
		if s := l[param]; s != nil {
			if v, ok := s.eval(name, ts.t); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// Open opens the checkpoints the configuration names and prepares the
// merge into out: layer slices are composed into views of the sources
// (layers renumbered consecutively, the tensors outside the layers taken
// from the first slice's models for embeddings and from the last slice's
// for the final norm and heads, as mergekit does), vocabularies are aligned
// when a tokenizer source is given, and the output's config.json is
// rewritten to match.
func (plan *YAMLPlan) Open(out string) (*Prepared, error) {
	prep := &Prepared{Config: plan.Config, SideFiles: map[string][]byte{}}
	ok := false
	defer func() {
		if !ok {
			prep.Close()
		}
	}()
	if plan.OutDType != "" {
		prep.OutDType, _ = checkpoint.ParseFloatDType(plan.OutDType)
	}
	opened := map[string]*checkpoint.Checkpoint{}
	open := func(path string) (*checkpoint.Checkpoint, error) {
		if c := opened[path]; c != nil {
			return c, nil
		}
		c, err := checkpoint.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: model %q: %w", plan.File, path, err)
		}
		opened[path] = c
		prep.closers = append(prep.closers, c.Close)
		prep.Inputs = append(prep.Inputs, c.Path)
		prep.InputSizes = append(prep.InputSizes, c.Size())
		return c, nil
	}
	for _, sl := range plan.Slices {
		for _, src := range sl.Sources {
			if _, err := open(src.Model); err != nil {
				return nil, err
			}
		}
		if sl.Base != "" && plan.hasBase() {
			if _, err := open(sl.Base); err != nil {
				return nil, err
			}
		}
	}
	donor := plan.Base
	if donor == "" {
		donor = plan.Slices[0].Sources[0].Model
	}
	if _, err := open(donor); err != nil {
		return nil, err
	}

	if plan.Layered || plan.Tokenizer != nil {
		for _, path := range sortedNames(opened) {
			if tasks.IsTaskVector(opened[path]) {
				return nil, fmt.Errorf("%s: model %q is a stored task vector: slices and tokenizer alignment need the fine-tuned checkpoints themselves", plan.File, path)
			}
		}
	}
	g, err := plan.compose(opened)
	if err != nil {
		return nil, err
	}
	if err := plan.alignVocab(prep, g, opened, out); err != nil {
		return nil, err
	}
	if plan.Tokenizer == nil {
		if err := g.checkVocabularies(plan.File); err != nil {
			return nil, err
		}
	}
	base, members, err := g.build(opened[donor].Dir)
	if err != nil {
		return nil, err
	}
	s, err := tasks.NewSet(base, members)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", plan.File, err)
	}
	prep.Set = s
	if tw, isTW := prep.Config.tensorwise.(*yamlTensorwise); isTW {
		t := *tw
		t.sources = g.sources
		prep.Config.tensorwise = &t
	}
	if plan.Layered {
		prep.Layers = g.layers
	}
	cfg, err := plan.outConfig(opened[donor], prep)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		prep.SideFiles["config.json"] = cfg
	}
	ok = true
	return prep, nil
}

// composition is the output's tensors and, per member and for the base,
// where each comes from.
type composition struct {
	names   []string
	base    []checkpoint.Part
	members [][]checkpoint.Part
	sources map[string]*tensorSource
	layers  int
	// identity: no tensor is renamed or replaced; the checkpoints
	// themselves can be used.
	identity     bool
	baseCk       *checkpoint.Checkpoint
	memberCks    []*checkpoint.Checkpoint
	memberModels []string
}

// compose lays out the output.
func (plan *YAMLPlan) compose(opened map[string]*checkpoint.Checkpoint) (*composition, error) {
	g := &composition{sources: map[string]*tensorSource{}}
	baseModel := func(si int) string {
		if plan.hasBase() {
			return plan.Slices[si].Base
		}
		return plan.Members(si)[0].Model
	}
	members0 := plan.Members(0)
	g.members = make([][]checkpoint.Part, len(members0))
	for _, m := range members0 {
		g.memberModels = append(g.memberModels, m.Model)
	}
	if !plan.Layered {
		g.identity = true
		g.baseCk = opened[baseModel(0)]
		for _, m := range members0 {
			g.memberCks = append(g.memberCks, opened[m.Model])
		}
		names := make([]string, 0, len(g.baseCk.Tensors()))
		for _, t := range g.baseCk.Tensors() {
			names = append(names, t.Name)
		}
		layout, err := checkpoint.NewLayout(names, "")
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			ts := &tensorSource{in: make([]string, len(members0))}
			for j := range ts.in {
				ts.in[j] = name
			}
			if d := layout.Depth(name); d.InBlock() {
				ts.t = 1
				if d.Blocks > 1 {
					ts.t = float64(d.Block) / float64(d.Blocks-1)
				}
			}
			g.sources[name] = ts
			g.names = append(g.names, name)
			g.base = append(g.base, checkpoint.Part{Name: name, From: g.baseCk, Tensor: name})
			for j, m := range members0 {
				g.members[j] = append(g.members[j], checkpoint.Part{Name: name, From: opened[m.Model], Tensor: name})
			}
		}
		return g, nil
	}

	// Layer slices: every model's tensors split into those before the
	// layers, each layer's, and those after.
	type split struct {
		stack      string
		layers     [][]string // tensor names of each layer, in storage order
		pre, post  []string
		rest       map[string]string // tensor name → the part after "stack.N."
		layerCount int
	}
	splits := map[*checkpoint.Checkpoint]*split{}
	splitOf := func(model string) (*split, error) {
		c := opened[model]
		if sp := splits[c]; sp != nil {
			return sp, nil
		}
		var names []string
		for _, t := range c.Tensors() {
			names = append(names, t.Name)
		}
		layout, err := checkpoint.NewLayout(names, "")
		if err != nil {
			return nil, err
		}
		stacks := layout.Stacks()
		if len(stacks) != 1 {
			return nil, fmt.Errorf("%s: model %q: slices need one stack of layers, found %d (layout %s): mergekit too asks for modules: then, which editkit does not support", plan.File, model, len(stacks), layout.Family)
		}
		sp := &split{rest: map[string]string{}}
		for st, n := range stacks {
			sp.stack, sp.layerCount = st, n
		}
		sp.layers = make([][]string, sp.layerCount)
		for _, name := range names {
			d := layout.Depth(name)
			switch {
			case d.InBlock():
				sp.layers[d.Block] = append(sp.layers[d.Block], name)
				sp.rest[name] = strings.TrimPrefix(name, sp.stack+strconv.Itoa(d.Block)+".")
			case isPreWeight(name):
				sp.pre = append(sp.pre, name)
			default:
				sp.post = append(sp.post, name)
			}
		}
		splits[c] = sp
		return sp, nil
	}
	nSlices := len(plan.Slices)
	add := func(name string, ts *tensorSource, from string, baseTensor string, memberTensors []string, si int) {
		g.names = append(g.names, name)
		g.sources[name] = ts
		g.base = append(g.base, checkpoint.Part{Name: name, From: opened[from], Tensor: baseTensor})
		for j, m := range plan.Members(si) {
			g.members[j] = append(g.members[j], checkpoint.Part{Name: name, From: opened[m.Model], Tensor: memberTensors[j]})
		}
	}
	outside := func(si int, pick func(*split) []string) error {
		sp, err := splitOf(baseModel(si))
		if err != nil {
			return err
		}
		for _, name := range pick(sp) {
			ts := &tensorSource{slice: si, in: make([]string, len(members0))}
			for j := range ts.in {
				ts.in[j] = name
			}
			add(name, ts, baseModel(si), name, ts.in, si)
		}
		return nil
	}
	if err := outside(0, func(sp *split) []string { return sp.pre }); err != nil {
		return nil, err
	}
	var stack string
	for si, sl := range plan.Slices {
		bsp, err := splitOf(baseModel(si))
		if err != nil {
			return nil, err
		}
		if stack == "" {
			stack = bsp.stack
		}
		var src *Source
		for i := range sl.Sources {
			if sl.Sources[i].Model == baseModel(si) {
				src = &sl.Sources[i]
				break
			}
		}
		members := plan.Members(si)
		msplits := make([]*split, len(members))
		for j, m := range members {
			if msplits[j], err = splitOf(m.Model); err != nil {
				return nil, err
			}
		}
		for _, m := range sl.Sources {
			sp, err := splitOf(m.Model)
			if err != nil {
				return nil, err
			}
			if m.Layers[1] > sp.layerCount {
				return nil, fmt.Errorf("%s:%d: layer_range %v of %q reaches past its %d layers", plan.File, m.node.Line, *m.Layers, m.Model, sp.layerCount)
			}
		}
		n := src.Layers[1] - src.Layers[0]
		for off := range n {
			t := 1.0
			if n > 1 {
				t = float64(off) / float64(n-1)
			}
			for _, in := range bsp.layers[src.Layers[0]+off] {
				rest := bsp.rest[in]
				out := stack + strconv.Itoa(g.layers) + "." + rest
				ts := &tensorSource{slice: si, t: t, in: make([]string, len(members))}
				for j, m := range members {
					ts.in[j] = msplits[j].stack + strconv.Itoa(m.Layers[0]+off) + "." + rest
				}
				add(out, ts, baseModel(si), in, ts.in, si)
			}
			g.layers++
		}
	}
	if err := outside(nSlices-1, func(sp *split) []string { return sp.post }); err != nil {
		return nil, err
	}
	return g, nil
}

// isPreWeight tells the tensors outside the layers that come before them
// (embeddings, which mergekit's architectures list as pre_weights) from
// those after (final norms, heads: post_weights).
func isPreWeight(name string) bool {
	for _, s := range []string{"embed", "wte", "wpe", "word_embeddings", "position_embedding", "patch_embedding", "class_embedding", "cls_token", "pre_layrnorm", "ln_pre"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// build returns the set's base and members: the checkpoints themselves, or
// views composed of their tensors.
func (g *composition) build(dir string) (*checkpoint.Checkpoint, []*checkpoint.Checkpoint, error) {
	if g.identity {
		return g.baseCk, g.memberCks, nil
	}
	base, err := checkpoint.Compose("the merged layout", dir, nil, g.base)
	if err != nil {
		return nil, nil, err
	}
	var members []*checkpoint.Checkpoint
	for j, parts := range g.members {
		m, err := checkpoint.Compose(fmt.Sprintf("%s (as composed)", g.memberModels[j]), dir, nil, parts)
		if err != nil {
			return nil, nil, err
		}
		members = append(members, m)
	}
	return base, members, nil
}

// checkVocabularies refuses embeddings whose number of rows differs between
// the models, naming the option that aligns them.
func (g *composition) checkVocabularies(file string) error {
	for i, name := range g.names {
		bt, _ := g.base[i].From.Tensor(g.base[i].Tensor)
		for j := range g.members {
			mt, _ := g.members[j][i].From.Tensor(g.members[j][i].Tensor)
			if len(bt.Shape) == 2 && len(mt.Shape) == 2 && bt.Shape[1] == mt.Shape[1] && bt.Shape[0] != mt.Shape[0] {
				return fmt.Errorf("%s: tensor %q has %d rows in %s and %d in %s: the vocabularies differ. Add tokenizer_source: union (every model's tokens), base or a model's path to align the embedding rows by token, as mergekit does", file, name, bt.Shape[0], g.base[i].From.Path, mt.Shape[0], g.members[j][i].From.Path)
			}
		}
	}
	return nil
}

// layerKeys are config.json keys that hold the number of layers.
var layerKeys = []string{"num_hidden_layers", "n_layer", "num_layers"}

// outConfig returns the donor's config.json with the output's layer
// count, vocabulary size and dtype, or nil when nothing changes (or there
// is no config.json).
func (plan *YAMLPlan) outConfig(donor *checkpoint.Checkpoint, prep *Prepared) ([]byte, error) {
	path := filepath.Join(donor.Dir, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var lost []string
		if prep.Layers > 0 {
			lost = append(lost, fmt.Sprintf("num_hidden_layers %d", prep.Layers))
		}
		if prep.vocabSize > 0 {
			lost = append(lost, fmt.Sprintf("vocab_size %d", prep.vocabSize))
		}
		if plan.OutDType != "" {
			lost = append(lost, "torch_dtype "+plan.OutDType)
		}
		if len(lost) > 0 {
			prep.Warnings = append(prep.Warnings, fmt.Sprintf("%s has no config.json, so the output has none recording its %s: add one before loading the output with a library that needs it", donor.Dir, strings.Join(lost, ", ")))
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	changed := false
	if prep.Layers > 0 {
		set := false
		for _, k := range layerKeys {
			if _, ok := cfg[k]; ok {
				cfg[k] = prep.Layers
				set, changed = true, true
				break
			}
		}
		if !set {
			return nil, fmt.Errorf("%s: no layer count (%s) to set to the output's %d layers", path, strings.Join(layerKeys, ", "), prep.Layers)
		}
	}
	if prep.vocabSize > 0 {
		cfg["vocab_size"] = prep.vocabSize
		changed = true
	}
	if dt := plan.OutDType; dt != "" {
		d, _ := checkpoint.ParseFloatDType(dt)
		cfg["torch_dtype"] = map[checkpoint.DType]string{checkpoint.F16: "float16", checkpoint.BF16: "bfloat16", checkpoint.F32: "float32", checkpoint.F64: "float64"}[d]
		changed = true
	}
	if !changed {
		return nil, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
