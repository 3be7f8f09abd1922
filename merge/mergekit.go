package merge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/editkit/editkit/checkpoint"
)

// YAMLPlan is a mergekit YAML configuration read into editkit's terms. Its
// Open method opens the checkpoints it names and prepares the merge.
//
// Model references are used as given: mergekit resolves them as Hugging Face
// repository ids or as local paths relative to the current directory, and
// editkit, which reads local checkpoints only, takes them as local paths
// relative to the current directory too (not to the YAML file's folder), so a
// configuration that runs with mergekit from a folder runs with editkit from
// the same folder.
type YAMLPlan struct {
	// File names the configuration in messages.
	File string
	// Config is the recipe (Semantics Mergekit; Paper for consensus and
	// ties_scope: model), with the parameters that are one value per model
	// or per merge set, and the rest resolved tensor by tensor.
	Config Config
	// Base is base_model, empty when the configuration has none.
	Base string
	// Slices are the output's layer slices; a models: list is one slice of
	// whole models.
	Slices []Slice
	// Layered is true for a slices: configuration (layer ranges).
	Layered bool
	// DType is mergekit's dtype (the arithmetic's precision), OutDType the
	// output's (out_dtype, else dtype); empty: float32 arithmetic, the
	// base's dtypes.
	DType, OutDType string
	// Tokenizer says how the output's vocabulary is built; nil copies the
	// base's tokenizer files.
	Tokenizer *TokenizerPlan
	// ChatTemplate is chat_template: "auto", or a Jinja template.
	ChatTemplate string
	// Warnings are what mergekit ignores and editkit reports, each as
	// "file:LINE: ...".
	Warnings []string
	// Raw is the file's content, for provenance.
	Raw []byte

	top map[string]*setting
}

// Slice is one output slice: the same layers of several models merged.
type Slice struct {
	Sources []Source
	// Base is the slice's base_model (the configuration's, unless the slice
	// sets its own).
	Base   string
	params map[string]*setting
	node   *yaml.Node
}

// Source is one model of a slice.
type Source struct {
	Model string
	// Layers is layer_range [from, to); nil for a whole model (models:).
	Layers *[2]int
	params map[string]*setting
	node   *yaml.Node
}

// TokenizerPlan is tokenizer_source, or tokenizer: {source, tokens,
// pad_to_multiple_of}.
type TokenizerPlan struct {
	// Source is "base", "union" or a model path.
	Source string
	// Tokens sets the embeddings of named tokens.
	Tokens map[string]TokenEmbedding
	// PadToMultipleOf pads the vocabulary with rows of the mean embedding.
	PadToMultipleOf int
}

// TokenEmbedding is the source of one token's embedding in tokenizer.tokens.
type TokenEmbedding struct {
	// Kind is "model" (the token's row in Model), "model_token" (row
	// TokenID, or the row of Token, in Model) or "zero".
	Kind    string
	Model   string
	Token   string
	TokenID int
	// Force uses this source even for models that have the token.
	Force bool
}

// ParseMergekitYAML reads a mergekit YAML configuration. file names it in
// messages. Every problem is reported at once, each with its line; what
// mergekit silently ignores (unknown keys, parameters a method does not
// read) is accepted with a warning in YAMLPlan.Warnings.
//
// Accepted: every mergekit merge method editkit implements (and editkit's
// consensus), base_model, models (with per-model parameters) or slices
// (sources with layer_range, slice parameters, a slice's own base_model),
// parameters as numbers, gradients (lists interpolated over the layers) and
// {filter, value} conditions, dtype and out_dtype, tokenizer_source (base,
// union or a model), tokenizer (source, tokens, pad_to_multiple_of) and
// chat_template. Refused with a message: modules, multi-document (mergekit-
// multi) configurations, LoRA (model+lora) and revision (model@rev)
// references.
func ParseMergekitYAML(data []byte, file string) (*YAMLPlan, error) {
	p := &yamlParser{file: file}
	plan := p.parse(data)
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	plan.Raw = data
	plan.Warnings = p.warnings
	return plan, nil
}

type yamlParser struct {
	file     string
	errs     []error
	warnings []string
	method   *methodRow
	sem      Semantics
}

func (p *yamlParser) at(n *yaml.Node) string {
	if n != nil && n.Line > 0 {
		return fmt.Sprintf("%s:%d", p.file, n.Line)
	}
	return p.file
}

func (p *yamlParser) errf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.at(n), fmt.Sprintf(format, args...)))
}

func (p *yamlParser) warnf(n *yaml.Node, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("%s: %s", p.at(n), fmt.Sprintf(format, args...)))
}

// paramErr reports a ParamError at a node as "file:LINE: name ...".
func (p *yamlParser) paramErr(n *yaml.Node, e *ParamError, model string) {
	name := e.Param
	if model != "" {
		name = fmt.Sprintf("model %q: %s", model, e.Param)
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.at(n), e.Message(name)))
}

// rejectedKeys are top-level keys editkit does not implement.
var rejectedKeys = map[string]string{
	"modules": "per-module merges (modules:) are not supported: use models: or slices:",
}

func (p *yamlParser) parse(data []byte) *YAMLPlan {
	plan := &YAMLPlan{File: p.file, Config: Config{Semantics: Mergekit}, top: map[string]*setting{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: invalid YAML: %w", p.file, err))
			return plan
		}
		docs = append(docs, &doc)
	}
	if len(docs) == 0 || len(docs[0].Content) == 0 {
		p.errs = append(p.errs, fmt.Errorf("%s: empty configuration: a mergekit config needs at least merge_method and models", p.file))
		return plan
	}
	if len(docs) > 1 {
		var names []string
		for _, d := range docs {
			if r := yamlDeref(d.Content[0]); r != nil && r.Kind == yaml.MappingNode {
				if n := mapValue(r, "name"); n != nil {
					names = append(names, n.Value)
				}
			}
		}
		p.errf(docs[1], "%d YAML documents: a multi-stage (mergekit-multi) configuration%s is not supported: run each stage with editkit merge --config, naming the earlier stages' output folders as models of the later ones", len(docs), listNames(names))
		return plan
	}
	root := yamlDeref(docs[0].Content[0])
	if root.Kind != yaml.MappingNode {
		p.errf(root, "the configuration must be a mapping of keys (merge_method, models, ...)")
		return plan
	}
	keys := map[string]*yaml.Node{}
	keyNodes := map[string]*yaml.Node{}
	p.eachKey(root, func(k string, kn, v *yaml.Node) {
		switch k {
		case "merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
			"tokenizer_source", "tokenizer", "chat_template":
			keys[k], keyNodes[k] = v, kn
		case "name":
			p.warnf(kn, "name: %q names a stage of a multi-stage (mergekit-multi) configuration; mergekit-yaml ignores it, and so does editkit", v.Value)
		default:
			if why, ok := rejectedKeys[k]; ok {
				p.errf(kn, "%s", why)
				return
			}
			p.warnf(kn, "unknown key %q ignored, as mergekit ignores it (known: merge_method, base_model, models, slices, parameters, dtype, out_dtype, tokenizer_source, tokenizer, chat_template)", k)
		}
	})

	// merge_method
	if mn := keys["merge_method"]; mn == nil {
		p.errs = append(p.errs, fmt.Errorf("%s: merge_method is missing (one of %s)", p.file, MethodNames()))
	} else if name, ok := p.str(mn, "merge_method"); ok {
		if p.method = rowOf(Method(name)); p.method == nil {
			p.errf(mn, "unknown merge_method %q (editkit supports %s)", name, MethodNames())
		} else {
			plan.Config.Method = p.method.method
		}
	}
	if p.method != nil && p.method.method == Consensus {
		p.sem = Paper
	} else {
		p.sem = Mergekit
	}
	if bn := keys["base_model"]; bn != nil {
		plan.Base, _ = p.modelRef(bn, "base_model")
	}

	// parameters
	if pn := keys["parameters"]; pn != nil {
		plan.top = p.params(pn, "")
	}
	if s := plan.top["ties_scope"]; s != nil && s.scalar == ScopeModel {
		p.sem = Paper
	}

	// models or slices
	switch {
	case keys["models"] != nil && keys["slices"] != nil:
		p.errf(keyNodes["slices"], "give either models: or slices:, not both (mergekit refuses both too)")
	case keys["models"] != nil:
		plan.Slices = p.modelsList(keys["models"], plan.Base)
	case keys["slices"] != nil:
		plan.Layered = true
		plan.Slices = p.slicesList(keys["slices"], plan.Base)
	default:
		p.errs = append(p.errs, fmt.Errorf("%s: models is missing: list the models to merge as models: [{model: PATH, parameters: {...}}], or layer ranges as slices:", p.file))
	}

	p.dtypes(plan, keys["dtype"], keys["out_dtype"])
	p.tokenizer(plan, keys["tokenizer_source"], keys["tokenizer"], keyNodes)
	if cn := keys["chat_template"]; cn != nil {
		if s, ok := p.str(cn, "chat_template"); ok {
			plan.ChatTemplate = s
			if s != "auto" && (len(s) < 20 || !strings.Contains(s, "{")) {
				p.errf(cn, "chat_template %q: editkit does not ship mergekit's named templates; give \"auto\" (the template most of the models use) or the Jinja template itself", s)
			}
		}
	}
	if p.method == nil || len(p.errs) > 0 {
		return plan
	}
	p.checkApplicable(plan)
	p.members(plan)
	if len(p.errs) > 0 {
		return plan
	}
	p.fillConfig(plan)
	return plan
}

func listNames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (stages " + strings.Join(names, ", ") + ")"
}

// modelsList reads models: as one slice of whole models. A base_model not
// listed is added, as mergekit adds it.
func (p *yamlParser) modelsList(n *yaml.Node, base string) []Slice {
	n = yamlDeref(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "models must be a list of {model: PATH, parameters: {...}}")
		return nil
	}
	if len(n.Content) == 0 {
		p.errf(n, "models is empty")
		return nil
	}
	s := Slice{Base: base, node: n}
	seen := map[string]bool{}
	for _, item := range n.Content {
		src, ok := p.source(item, false)
		if !ok {
			continue
		}
		if seen[src.Model] {
			p.errf(item, "model %q is listed twice", src.Model)
			continue
		}
		seen[src.Model] = true
		s.Sources = append(s.Sources, src)
	}
	if base != "" && !seen[base] && len(s.Sources) > 0 {
		s.Sources = append(s.Sources, Source{Model: base, node: n, params: map[string]*setting{}})
	}
	return []Slice{s}
}

// slicesList reads slices:.
func (p *yamlParser) slicesList(n *yaml.Node, base string) []Slice {
	n = yamlDeref(n)
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errf(n, "slices must be a non-empty list of {sources: [{model: PATH, layer_range: [FROM, TO]}, ...]}")
		return nil
	}
	var out []Slice
	for _, item := range n.Content {
		item = yamlDeref(item)
		if item.Kind != yaml.MappingNode {
			p.errf(item, "each slice must be a mapping {sources: [...], parameters: {...}}")
			continue
		}
		s := Slice{Base: base, node: item, params: map[string]*setting{}}
		var sources *yaml.Node
		p.eachKey(item, func(k string, kn, v *yaml.Node) {
			switch k {
			case "sources":
				sources = v
			case "parameters":
				s.params = p.params(v, "")
			case "base_model":
				s.Base, _ = p.modelRef(v, "base_model")
			case "residual_weight":
				p.warnf(kn, "residual_weight has no effect: mergekit does not use it")
			default:
				p.warnf(kn, "unknown key %q in a slice ignored, as mergekit ignores it (known: sources, parameters, base_model)", k)
			}
		})
		if sources == nil || sources.Kind != yaml.SequenceNode || len(sources.Content) == 0 {
			p.errf(item, "slice without sources: give sources: [{model: PATH, layer_range: [FROM, TO]}, ...]")
			continue
		}
		length := -1
		for _, sn := range sources.Content {
			src, ok := p.source(sn, true)
			if !ok {
				continue
			}
			if l := src.Layers[1] - src.Layers[0]; length < 0 {
				length = l
			} else if l != length {
				p.errf(sn, "layer_range %v spans %d layers where the slice's first source spans %d: all sources of a slice must span the same number of layers", *src.Layers, l, length)
			}
			s.Sources = append(s.Sources, src)
		}
		out = append(out, s)
	}
	return out
}

// source reads one models entry or slice source.
func (p *yamlParser) source(n *yaml.Node, layered bool) (Source, bool) {
	n = yamlDeref(n)
	src := Source{node: n, params: map[string]*setting{}}
	if n.Kind != yaml.MappingNode {
		p.errf(n, "each entry must be a mapping {model: PATH, parameters: {...}}")
		return src, false
	}
	var haveModel, haveRange bool
	p.eachKey(n, func(k string, kn, v *yaml.Node) {
		switch k {
		case "model":
			haveModel = true
			src.Model, _ = p.modelRef(v, "model")
		case "parameters":
			src.params = p.params(v, "")
		case "layer_range":
			if !layered {
				p.warnf(kn, "layer_range in a models entry ignored, as mergekit ignores it: layer ranges belong in slices: sources")
				return
			}
			haveRange = true
			r, ok := p.layerRange(v)
			if ok {
				src.Layers = &r
			}
		default:
			p.warnf(kn, "unknown key %q ignored, as mergekit ignores it (known: model, parameters%s)", k, map[bool]string{true: ", layer_range"}[layered])
		}
	})
	if !haveModel || src.Model == "" {
		p.errf(n, "entry without a model path")
		return src, false
	}
	if layered && !haveRange {
		p.errf(n, "source %q has no layer_range: give layer_range: [FROM, TO]", src.Model)
		return src, false
	}
	if layered && src.Layers == nil {
		return src, false
	}
	return src, true
}

func (p *yamlParser) layerRange(v *yaml.Node) ([2]int, bool) {
	var r [2]int
	if v.Kind != yaml.SequenceNode || len(v.Content) != 2 {
		p.errf(v, "layer_range must be [FROM, TO]")
		return r, false
	}
	for i, e := range v.Content {
		x, err := strconv.Atoi(e.Value)
		if err != nil || e.Kind != yaml.ScalarNode {
			p.errf(e, "layer_range must be two whole numbers [FROM, TO], got %q", e.Value)
			return r, false
		}
		r[i] = x
	}
	if r[0] < 0 || r[1] <= r[0] {
		p.errf(v, "layer_range [%d, %d] is empty or negative: give 0 ≤ FROM < TO", r[0], r[1])
		return r, false
	}
	return r, true
}

// modelRef reads a model reference: a local path (Hub ids are folders
// relative to the current directory).
func (p *yamlParser) modelRef(n *yaml.Node, what string) (string, bool) {
	s, ok := p.str(n, what)
	if !ok {
		return "", false
	}
	switch {
	case strings.Contains(s, "+"):
		p.errf(n, "%s %q: LoRA references (model+adapter) are not supported: merge the adapter into the model first", what, s)
		return "", false
	case strings.Contains(s, "@"):
		p.errf(n, "%s %q: revisions (model@revision) name Hugging Face Hub revisions; editkit reads local folders: give the folder of that revision", what, s)
		return "", false
	}
	return s, true
}

func (p *yamlParser) dtypes(plan *YAMLPlan, dtype, outDType *yaml.Node) {
	for _, d := range []struct {
		n   *yaml.Node
		dst *string
	}{{dtype, &plan.DType}, {outDType, &plan.OutDType}} {
		if d.n == nil {
			continue
		}
		s, ok := p.str(d.n, "dtype")
		if !ok {
			continue
		}
		if _, err := checkpoint.ParseFloatDType(s); err != nil {
			p.errf(d.n, "%v", err)
			continue
		}
		*d.dst = s
	}
	if plan.OutDType == "" {
		plan.OutDType = plan.DType
	}
}

func (p *yamlParser) tokenizer(plan *YAMLPlan, src, tok *yaml.Node, keyNodes map[string]*yaml.Node) {
	if src != nil && tok != nil {
		p.errf(keyNodes["tokenizer"], "give tokenizer_source or tokenizer, not both (mergekit refuses both too)")
		return
	}
	if src != nil {
		if s, ok := p.modelRef(src, "tokenizer_source"); ok {
			plan.Tokenizer = &TokenizerPlan{Source: s}
		}
		return
	}
	if tok == nil {
		return
	}
	tok = yamlDeref(tok)
	if tok.Kind != yaml.MappingNode {
		p.errf(tok, "tokenizer must be a mapping {source: union|base|MODEL, tokens: {...}, pad_to_multiple_of: N}")
		return
	}
	tp := &TokenizerPlan{Source: "union"}
	p.eachKey(tok, func(k string, kn, v *yaml.Node) {
		switch k {
		case "source":
			tp.Source, _ = p.modelRef(v, "tokenizer source")
		case "pad_to_multiple_of":
			if v.Tag == "!!null" {
				return
			}
			n, err := strconv.Atoi(v.Value)
			if err != nil || n <= 0 || v.Tag != "!!int" {
				p.errf(v, "pad_to_multiple_of must be a positive whole number, got %q", v.Value)
				return
			}
			tp.PadToMultipleOf = n
		case "tokens":
			tp.Tokens = p.tokenEmbeddings(v)
		default:
			p.warnf(kn, "unknown key %q in tokenizer ignored (known: source, tokens, pad_to_multiple_of)", k)
		}
	})
	plan.Tokenizer = tp
}

func (p *yamlParser) tokenEmbeddings(n *yaml.Node) map[string]TokenEmbedding {
	out := map[string]TokenEmbedding{}
	n = yamlDeref(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, "tokenizer tokens must map each token to {source: ..., force: ...}")
		return out
	}
	p.eachKey(n, func(tokName string, _, v *yaml.Node) {
		var te TokenEmbedding
		if v.Kind != yaml.MappingNode {
			p.errf(v, "token %q: give {source: MODEL | {kind: model_token, model: MODEL, token: TOKEN} | {kind: zero}, force: BOOL}", tokName)
			return
		}
		p.eachKey(v, func(k string, kn, x *yaml.Node) {
			switch k {
			case "force":
				if x.Tag != "!!bool" {
					p.errf(x, "token %q: force must be true or false", tokName)
					return
				}
				te.Force = x.Value == "true"
			case "source":
				if x.Kind == yaml.ScalarNode {
					te.Kind = "model"
					te.Model, _ = p.modelRef(x, "token source")
					return
				}
				p.eachKey(x, func(k2 string, kn2, y *yaml.Node) {
					switch k2 {
					case "kind":
						te.Kind = y.Value
					case "model":
						te.Model, _ = p.modelRef(y, "token source model")
					case "token":
						te.Token = y.Value
					case "token_id":
						id, err := strconv.Atoi(y.Value)
						if err != nil || id < 0 {
							p.errf(y, "token %q: token_id must be a non-negative whole number", tokName)
						}
						te.TokenID = id
						te.Token = ""
						if te.Kind == "" {
							te.Kind = "model_token"
						}
					default:
						p.errf(kn2, "token %q: unknown source key %q (kind, model, token, token_id)", tokName, k2)
					}
				})
				switch te.Kind {
				case "zero":
				case "model_token":
					if te.Model == "" {
						p.errf(x, "token %q: a model_token source needs a model", tokName)
					}
				default:
					p.errf(x, "token %q: source kind %q (use model_token or zero)", tokName, te.Kind)
				}
			default:
				p.errf(kn, "token %q: unknown key %q (source, force)", tokName, k)
			}
		})
		if te.Kind == "" {
			p.errf(v, "token %q has no source", tokName)
			return
		}
		out[tokName] = te
	})
	return out
}

// checkApplicable warns about parameters the method does not read (mergekit
// ignores them) or that mergekit reads only elsewhere, and drops them.
func (p *yamlParser) checkApplicable(plan *YAMLPlan) {
	m := p.method.method
	filter := func(params map[string]*setting, model string) {
		for _, name := range sortedNames(params) {
			s := params[name]
			prm := ParamByName(name)
			u := p.method.use(name)
			where := ""
			if model != "" {
				where = fmt.Sprintf("model %q: ", model)
			}
			switch {
			case !u.in(p.sem):
				p.warnf(s.node, "%sparameter %q has no effect on %s and is ignored, as mergekit ignores it (%s)", where, name, m, takesText(m, p.sem))
				delete(params, name)
			case model != "" && prm.Kind != Floats:
				p.warnf(s.node, "%sparameter %q is a method parameter: mergekit reads it from the top-level or slice parameters only and ignores it per model", where, name)
				delete(params, name)
			case u.noEffect && name != "int8_mask":
				p.warnf(s.node, "%sparameter %q has no effect on %s (mergekit declares it for %s but does not use it)", where, name, m, m)
				delete(params, name)
			}
		}
	}
	filter(plan.top, "")
	for i := range plan.Slices {
		filter(plan.Slices[i].params, "")
		for j := range plan.Slices[i].Sources {
			filter(plan.Slices[i].Sources[j].params, plan.Slices[i].Sources[j].Model)
		}
	}
}

// members checks the models each slice gives the method against mergekit's
// rules: which take part, which is the base.
func (p *yamlParser) members(plan *YAMLPlan) {
	row := p.method
	m := row.method
	slots := -1
	for si := range plan.Slices {
		s := &plan.Slices[si]
		var others int
		hasBase := false
		for _, src := range s.Sources {
			if s.Base != "" && src.Model == s.Base {
				hasBase = true
			} else {
				others++
			}
		}
		where := "models"
		if plan.Layered {
			where = fmt.Sprintf("slice %d", si+1)
		}
		switch row.base {
		case baseRequired:
			if s.Base == "" {
				p.errs = append(p.errs, fmt.Errorf("%s: %s needs a base_model: %s", p.file, m, map[bool]string{true: "task vectors are taken against it", false: "it is the model the others are combined with"}[row.taskVectors]))
				return
			}
			if !hasBase {
				p.errf(s.node, "%s: base_model %q is not among the sources: %s needs it in every slice", where, s.Base, m)
				return
			}
		case baseNone:
			if plan.Base != "" && !plan.Layered {
				p.errf(s.node, "%s takes one model and no base_model: mergekit adds base_model to the models and then fails", m)
				return
			}
			others = len(s.Sources)
		case baseAveraged:
			others = len(s.Sources)
		case baseOptional:
			if !hasBase {
				others = len(s.Sources)
			}
		}
		if others == 0 {
			p.errf(s.node, "%s: no models besides base_model %q to merge", where, s.Base)
			return
		}
		if slots >= 0 && others != slots {
			p.errf(s.node, "slice %d merges %d models where slice 1 merges %d: editkit needs the same number of models in every slice", si+1, others, slots)
			return
		}
		slots = others
	}
	if slots < row.minModels || (row.maxModels > 0 && slots > row.maxModels) {
		msg := modelCountError(row, slots).Error()
		if row.base == baseRequired {
			msg += " (base_model not counted)"
		}
		p.errs = append(p.errs, fmt.Errorf("%s: %s", p.file, msg))
	}
}

// Members returns, for each slice, the sources that are the merge's
// members (the base excluded where the method takes task vectors against
// it), in order.
func (plan *YAMLPlan) Members(si int) []Source {
	row := rowOf(plan.Config.Method)
	s := plan.Slices[si]
	var out []Source
	for _, src := range s.Sources {
		if src.Model == s.Base && (row.base == baseRequired || row.base == baseOptional) {
			continue
		}
		out = append(out, src)
	}
	return out
}

// hasBase reports whether the merge's set has a real base (else the base is
// only a layout donor).
func (plan *YAMLPlan) hasBase() bool {
	row := rowOf(plan.Config.Method)
	return (row.base == baseRequired || row.base == baseOptional) && plan.Slices[0].Base != ""
}

// fillConfig sets the Config's parameters: one value per model or for
// the whole merge where the configuration gives one, the rest per tensor.
func (p *yamlParser) fillConfig(plan *YAMLPlan) {
	c := &plan.Config
	c.Semantics = p.sem
	c.BaseIsLayout = !plan.hasBase()
	if plan.DType != "" {
		c.DType, _ = checkpoint.ParseFloatDType(plan.DType)
	}
	tw := &yamlTensorwise{plan: plan, vary: map[string]bool{}}
	nMembers := len(plan.Members(0))
	for _, u := range p.method.params {
		prm := ParamByName(u.name)
		if u.noEffect || !u.in(p.sem) {
			continue
		}
		if p.varies(plan, u.name) {
			tw.vary[u.name] = true
			continue
		}
		if prm.Kind == Floats {
			vals := make([]float64, nMembers)
			given := false
			for i, src := range plan.Members(0) {
				s := lookup(src.params, plan.Slices[0].params, plan.top, u.name)
				if s == nil {
					d := u.mergekit
					if p.sem == Paper {
						d = u.paper
					}
					switch {
					case d.required != "":
						p.errf(src.node, "model %q has no %s: %s (set parameters: {%s: ...} for the model or at the top level)", src.Model, u.name, d.required, u.name)
						continue
					case d.v == nil:
						vals[i] = math.NaN()
						continue
					}
					vals[i] = d.v.(float64)
					continue
				}
				given = true
				vals[i] = s.scalar.(float64)
			}
			if given {
				prm.Set(c, vals)
			}
			continue
		}
		if s := lookup(nil, plan.Slices[0].params, plan.top, u.name); s != nil {
			prm.Set(c, s.scalar)
		}
	}
	if len(tw.vary) > 0 {
		c.tensorwise = tw
	}
	rc, err := c.Resolve(nMembers)
	if err != nil {
		var pe *ParamError
		if errors.As(err, &pe) {
			p.paramErr(plan.paramNode(pe.Param), pe, "")
			return
		}
		p.errs = append(p.errs, fmt.Errorf("%s: %w", p.file, err))
		return
	}
	_ = rc
	if p.sem == Paper {
		// editkit's extensions (consensus, ties_scope: model) follow the
		// papers, which have one value per model for the whole model.
		for _, name := range sortedNames(tw.vary) {
			p.errf(plan.paramNode(name), "%s varies by tensor (a gradient, a filter, or values per slice): %s takes one value per model for the whole model", name, map[bool]string{true: "consensus", false: "ties_scope: model"}[c.Method == Consensus])
		}
	}
}

// varies reports whether a parameter takes different values across the
// tensors: a gradient or condition anywhere, or any value inside the
// slices of a configuration with several slices.
func (p *yamlParser) varies(plan *YAMLPlan, name string) bool {
	multi := len(plan.Slices) > 1
	given := func(s *setting) bool { return s != nil && (multi || !s.isScalar()) }
	if s := plan.top[name]; s != nil && !s.isScalar() {
		return true
	}
	for _, sl := range plan.Slices {
		if given(sl.params[name]) {
			return true
		}
		for _, src := range sl.Sources {
			if given(src.params[name]) {
				return true
			}
		}
	}
	return false
}

// lookup returns the first setting of name among the levels.
func lookup(source, slice, top map[string]*setting, name string) *setting {
	for _, m := range []map[string]*setting{source, slice, top} {
		if s := m[name]; s != nil {
			return s
		}
	}
	return nil
}

// paramNode returns the node where a parameter is given, for messages.
func (plan *YAMLPlan) paramNode(name string) *yaml.Node {
	if s := plan.top[name]; s != nil {
		return s.node
	}
	for _, sl := range plan.Slices {
		if s := sl.params[name]; s != nil {
			return s.node
		}
		for _, src := range sl.Sources {
			if s := src.params[name]; s != nil {
				return s.node
			}
		}
	}
	return nil
}

// eachKey visits a mapping's keys in order, refusing duplicates (which
// yaml.v3 keeps in a Node, and which mergekit's loader would resolve to the
// last one without a word).
func (p *yamlParser) eachKey(m *yaml.Node, fn func(k string, kn, v *yaml.Node)) {
	m = yamlDeref(m)
	if m.Kind != yaml.MappingNode {
		p.errf(m, "expected a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, v := m.Content[i], yamlDeref(m.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			p.errf(kn, "keys must be plain names")
			continue
		}
		if seen[kn.Value] {
			p.errf(kn, "key %q given twice", kn.Value)
			continue
		}
		seen[kn.Value] = true
		fn(kn.Value, kn, v)
	}
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return yamlDeref(m.Content[i+1])
		}
	}
	return nil
}

func (p *yamlParser) str(n *yaml.Node, name string) (string, bool) {
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "") {
		p.errf(n, "%s must be a string", name)
		return "", false
	}
	return strings.TrimSpace(n.Value), true
}

// yamlDeref follows YAML aliases (*anchor) to the node they name.
func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
