package merge

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/editkit/editkit/checkpoint"
)

// YAMLPlan is a mergekit YAML configuration translated into editkit terms.
//
// Model references are used as given: mergekit resolves them as Hugging Face
// repository ids or as local paths relative to the current directory, and
// editkit, which reads local checkpoints only, takes them as local paths
// relative to the current directory too (not to the YAML file's folder), so a
// configuration that runs with mergekit from a folder runs with editkit from
// the same folder.
type YAMLPlan struct {
	// Config is the merge recipe with Semantics Mergekit. It is not yet
	// validated against defaults (Run does that), but ParseMergekitYAML has
	// checked that it validates.
	Config Config
	// Base is the checkpoint the set is built on. For linear without a
	// base_model it is the first model: it then only supplies the tensor
	// layout and the non-float tensors.
	Base string
	// Models are the set's members, one per entry of Config.Weights.
	Models []string
	// DType is the output dtype as written in the file (out_dtype, else
	// dtype), empty to keep the base's dtypes. editkit always computes in
	// float32, so mergekit's dtype only picks the output type.
	DType string
	// Raw is the file's content, for provenance.
	Raw []byte
}

// yamlKind is the YAML type a parameter takes.
type yamlKind int

const (
	yamlFloat yamlKind = iota
	yamlBool
	yamlUint
	yamlString
)

// yamlParamSpec describes a parameter editkit accepts in a mergekit YAML.
type yamlParamSpec struct {
	kind yamlKind
	// perModel marks mergekit's tensor parameters, which may be given per
	// model (models[].parameters) as well as at the top level. The others are
	// method parameters, which mergekit reads at the top level only.
	perModel bool
}

// yamlParams are the parameters editkit accepts. ties_scope, seed, k,
// tall_lambda and consensus_base are editkit extensions: ties_scope: model
// selects the paper's TIES, which trims by magnitude over the whole model
// instead of per tensor.
var yamlParams = map[string]yamlParamSpec{
	"weight":         {yamlFloat, true},
	"density":        {yamlFloat, true},
	"gamma":          {yamlFloat, true},
	"tall_lambda":    {yamlFloat, true},
	"lambda":         {yamlFloat, false},
	"normalize":      {yamlBool, false},
	"rescale":        {yamlBool, false},
	"t":              {yamlFloat, false},
	"filter_wise":    {yamlBool, false},
	"ties_scope":     {yamlString, false},
	"seed":           {yamlUint, false},
	"k":              {yamlUint, false},
	"consensus_base": {yamlString, false},
}

// rejectedParams are mergekit parameters editkit does not implement, with
// the reason.
var rejectedParams = map[string]string{
	"epsilon":   "it belongs to della, which editkit does not implement",
	"int8_mask": "it is a mergekit memory option editkit does not have (its masks are booleans, so the merge is the same without it): remove it",
}

// methodParams lists the parameters that change each method's result.
// mergekit silently ignores the parameters a method does not read; editkit
// refuses them, so a typo or a parameter meant for another method is caught.
var methodParams = map[Method][]string{
	Linear:          {"weight", "normalize"},
	TaskArithmetic:  {"weight", "lambda", "normalize"},
	TIES:            {"weight", "density", "lambda", "normalize", "rescale", "ties_scope"},
	DARELinear:      {"weight", "density", "lambda", "normalize", "rescale", "seed"},
	DARETIES:        {"weight", "density", "lambda", "normalize", "rescale", "seed"},
	Breadcrumbs:     {"weight", "density", "gamma", "lambda", "normalize", "rescale"},
	BreadcrumbsTIES: {"weight", "density", "gamma", "lambda", "normalize", "rescale"},
	Consensus:       {"weight", "lambda", "k", "tall_lambda", "consensus_base"},
	ModelStock:      {"filter_wise"},
	SLERP:           {"t"},
}

// topLevelKeys are the top-level keys editkit accepts.
var topLevelKeys = []string{"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source"}

// rejectedKeys are mergekit top-level keys editkit does not implement.
var rejectedKeys = map[string]string{
	"slices":        "per-layer-range merges are not supported: editkit merges whole models, listed under models:",
	"modules":       "per-module merges are not supported: editkit merges whole models, listed under models:",
	"tokenizer":     "tokenizer configurations are not supported: editkit copies the base model's tokenizer files (tokenizer_source: base)",
	"chat_template": "chat templates are not supported: editkit copies the base model's tokenizer files unchanged",
}

// ParseMergekitYAML translates a mergekit YAML configuration into a plan.
// file names the configuration in errors. Everything editkit cannot honour
// exactly is an error naming the key, rather than a silently different merge.
//
// Accepted: merge_method (linear, task_arithmetic, ties, dare_linear,
// dare_ties, breadcrumbs, breadcrumbs_ties, model_stock, slerp, and editkit's
// consensus), base_model, models[].model with models[].parameters (weight,
// density, gamma, and editkit's tall_lambda), top-level parameters (those,
// plus lambda, normalize, rescale, t, filter_wise, and editkit's ties_scope,
// seed, k, consensus_base), dtype and out_dtype, and tokenizer_source: base.
// Refused: slices, modules, tokenizer, chat_template, della's epsilon,
// int8_mask, gradient (list) and conditional ({filter, value}) parameters,
// method parameters given per model (mergekit ignores them there), and
// parameters the method does not read (mergekit ignores those too).
//
// Members follow mergekit's rules per method:
//   - linear averages the listed models; a base_model listed among them is
//     averaged like any other (it is then also the set's base). Without
//     base_model the first model is the set's base, which only supplies the
//     layout and the non-float tensors.
//   - task-vector methods need base_model; a models entry naming it is
//     dropped, since mergekit never uses the base as a task vector. Every
//     other model needs a weight, per model or at the top level (not for
//     consensus, whose weights default to 1).
//   - slerp needs base_model (t = 0) and exactly one other model.
//   - model_stock needs base_model and at least two other models.
func ParseMergekitYAML(data []byte, file string) (*YAMLPlan, error) {
	p := &yamlParser{file: file}
	plan, err := p.parse(data)
	if err != nil {
		return nil, err
	}
	plan.Raw = data
	check := plan.Config.cloneForValidate()
	if err := check.Validate(len(plan.Models)); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return plan, nil
}

type yamlParser struct {
	file string
}

func (p *yamlParser) errf(n *yaml.Node, format string, args ...any) error {
	if n != nil && n.Line > 0 {
		return fmt.Errorf("%s:%d: %s", p.file, n.Line, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%s: %s", p.file, fmt.Sprintf(format, args...))
}

// modelEntry is one item of models:.
type modelEntry struct {
	ref    string
	node   *yaml.Node
	params map[string]*yaml.Node
}

func (p *yamlParser) parse(data []byte) (*YAMLPlan, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: invalid YAML: %w", p.file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty configuration: a mergekit config needs at least merge_method and models", p.file)
	}
	root := yamlDeref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, p.errf(root, "the configuration must be a mapping of keys (merge_method, models, ...)")
	}
	var (
		methodNode, baseNode, modelsNode, paramsNode *yaml.Node
		dtype, outDType, tokenizer                   *yaml.Node
	)
	err := p.eachKey(root, func(k string, kn, v *yaml.Node) error {
		switch k {
		case "merge_method":
			methodNode = v
		case "base_model":
			baseNode = v
		case "models":
			modelsNode = v
		case "parameters":
			paramsNode = v
		case "dtype":
			dtype = v
		case "out_dtype":
			outDType = v
		case "tokenizer_source":
			tokenizer = v
		default:
			if why, ok := rejectedKeys[k]; ok {
				return p.errf(kn, "key %q: %s", k, why)
			}
			return p.errf(kn, "unknown key %q (editkit accepts %s)", k, strings.Join(topLevelKeys, ", "))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	plan := &YAMLPlan{Config: Config{Semantics: Mergekit}}

	if methodNode == nil {
		return nil, fmt.Errorf("%s: merge_method is missing (one of %s)", p.file, methodList())
	}
	name, err := p.str(methodNode, "merge_method")
	if err != nil {
		return nil, err
	}
	method := Method(name)
	if _, ok := methodParams[method]; !ok {
		return nil, p.errf(methodNode, "unknown merge_method %q (editkit supports %s)", name, methodList())
	}
	plan.Config.Method = method

	var base string
	if baseNode != nil {
		if base, err = p.str(baseNode, "base_model"); err != nil {
			return nil, err
		}
	}
	if tokenizer != nil {
		src, err := p.str(tokenizer, "tokenizer_source")
		if err != nil {
			return nil, err
		}
		if src != "base" {
			return nil, p.errf(tokenizer, "tokenizer_source %q is not supported: editkit copies the base model's tokenizer files, so only tokenizer_source: base is accepted", src)
		}
		if base == "" {
			return nil, p.errf(tokenizer, "tokenizer_source: base needs a base_model")
		}
	}
	if outDType != nil {
		dtype = outDType
	}
	if dtype != nil {
		if plan.DType, err = p.str(dtype, "dtype"); err != nil {
			return nil, err
		}
		if _, err := checkpoint.ParseFloatDType(plan.DType); err != nil {
			return nil, p.errf(dtype, "%v", err)
		}
	}

	top := map[string]*yaml.Node{}
	if paramsNode != nil {
		if top, err = p.params(paramsNode); err != nil {
			return nil, err
		}
		for _, name := range sortedNames(top) {
			if err := p.scalarParam(top[name], name, ""); err != nil {
				return nil, err
			}
		}
	}
	if modelsNode == nil {
		return nil, fmt.Errorf("%s: models is missing: list the models to merge as models: [{model: PATH, parameters: {...}}]", p.file)
	}
	entries, err := p.models(modelsNode)
	if err != nil {
		return nil, err
	}
	if err := p.checkApplicable(method, top, entries); err != nil {
		return nil, err
	}
	members, err := p.members(plan, method, base, entries, top, modelsNode)
	if err != nil {
		return nil, err
	}
	for _, e := range members {
		plan.Models = append(plan.Models, e.ref)
	}
	if err := p.tensorParams(&plan.Config, method, members, top); err != nil {
		return nil, err
	}
	if err := p.methodParams(&plan.Config, top); err != nil {
		return nil, err
	}
	return plan, nil
}

// members picks the set's base and members by mergekit's rules for method.
func (p *yamlParser) members(plan *YAMLPlan, method Method, base string, entries []modelEntry, top map[string]*yaml.Node, modelsNode *yaml.Node) ([]modelEntry, error) {
	var others []modelEntry
	listed := false
	for _, e := range entries {
		if base != "" && e.ref == base {
			listed = true
			continue
		}
		others = append(others, e)
	}
	switch method {
	case Linear:
		// mergekit's linear averages every listed model; the base takes part
		// only when listed, like any other model. An unlisted base_model is
		// appended by mergekit with the top-level weight (or fails for lack
		// of one); editkit asks for it to be listed instead.
		if base != "" && !listed {
			return nil, p.errf(modelsNode, "linear: base_model %q is not listed under models: mergekit would add it to the average with the top-level weight (or fail without one); list it under models with its weight to average it in, or drop base_model", base)
		}
		if base == "" {
			base = entries[0].ref
		}
		plan.Base = base
		return entries, nil
	case SLERP:
		if base == "" {
			return nil, fmt.Errorf("%s: slerp needs a base_model (the model at t = 0)", p.file)
		}
		if len(others) != 1 {
			return nil, p.errf(modelsNode, "slerp interpolates between exactly two models, one of them base_model %q; got %d other model(s)", base, len(others))
		}
	case ModelStock:
		if base == "" {
			return nil, fmt.Errorf("%s: model_stock needs a base_model", p.file)
		}
		if len(others) < 2 {
			return nil, p.errf(modelsNode, "model_stock needs base_model and at least 2 other models, got %d other model(s)", len(others))
		}
	default:
		// Task-vector methods: mergekit never uses the base as a task
		// vector, so a models entry naming it is dropped (with its
		// parameters, which mergekit ignores too).
		if base == "" {
			return nil, fmt.Errorf("%s: %s needs a base_model: task vectors are taken against it", p.file, method)
		}
		if len(others) == 0 {
			return nil, p.errf(modelsNode, "%s: no models besides base_model %q to merge", method, base)
		}
	}
	plan.Base = base
	return others, nil
}

// tensorParams resolves mergekit's tensor parameters (per model, else top
// level, else the default) for the members.
func (p *yamlParser) tensorParams(c *Config, method Method, members []modelEntry, top map[string]*yaml.Node) error {
	needWeight := method != Consensus && method != SLERP && method != ModelStock
	resolve := func(name string) (vals []float64, given bool, err error) {
		for _, e := range members {
			n, ok := e.params[name]
			if !ok {
				n, ok = top[name]
			}
			if !ok {
				vals = append(vals, unsetParam)
				continue
			}
			v, err := p.float(n, name)
			if err != nil {
				return nil, false, err
			}
			vals = append(vals, v)
			given = true
		}
		return vals, given, nil
	}
	w, given, err := resolve("weight")
	if err != nil {
		return err
	}
	if given || needWeight {
		for i, v := range w {
			if v != v { // NaN: not given
				if needWeight {
					return p.errf(members[i].node, "model %q has no weight: mergekit requires one per model for %s (set parameters: {weight: ...} for the model or at the top level)", members[i].ref, method)
				}
				w[i] = 1
			}
		}
		c.Weights = w
	}
	if d, given, err := resolve("density"); err != nil {
		return err
	} else if given {
		c.Density = fillUnset(d, 1) // mergekit's default density keeps everything
	}
	if tl, given, err := resolve("tall_lambda"); err != nil {
		return err
	} else if given {
		c.TallLambda = fillUnset(tl, defaultTallLambda)
	}
	if g, given, err := resolve("gamma"); err != nil {
		return err
	} else if given {
		g = fillUnset(g, defaultGamma)
		for i := range g {
			if g[i] != g[0] {
				return p.errf(members[i].node, "gamma differs between models (%v for %q, %v for %q): editkit supports one gamma for all models", g[0], members[0].ref, g[i], members[i].ref)
			}
		}
		c.Gamma = &g[0]
	}
	return nil
}

// unsetParam marks a parameter not given for a model.
var unsetParam = math.NaN()

func fillUnset(v []float64, def float64) []float64 {
	for i := range v {
		if v[i] != v[i] {
			v[i] = def
		}
	}
	return v
}

// methodParams sets the method parameters from the top level.
func (p *yamlParser) methodParams(c *Config, top map[string]*yaml.Node) error {
	for _, name := range sortedNames(top) {
		n := top[name]
		var err error
		switch name {
		case "lambda":
			var v float64
			v, err = p.float(n, name)
			c.Lambda = &v
		case "t":
			var v float64
			v, err = p.float(n, name)
			c.T = &v
		case "normalize":
			var v bool
			v, err = p.bool(n, name)
			c.Normalize = &v
		case "rescale":
			var v bool
			v, err = p.bool(n, name)
			c.Rescale = &v
		case "filter_wise":
			c.FilterWise, err = p.bool(n, name)
		case "seed":
			c.Seed, err = p.uint(n, name)
		case "k":
			var v uint64
			v, err = p.uint(n, name)
			c.K = int(min(v, 1<<31))
			if err == nil && v == 0 {
				// Validate reads K == 0 as "default"; k: 0 (keep every
				// entry) is spelled out so it is not lost.
				err = p.errf(n, "k: 0 would keep every entry, which is task arithmetic: use merge_method: task_arithmetic instead")
			}
		case "ties_scope":
			c.TIESScope, err = p.str(n, name)
		case "consensus_base":
			c.ConsensusBase, err = p.str(n, name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkApplicable refuses parameters the method does not read, and method
// parameters given per model.
func (p *yamlParser) checkApplicable(method Method, top map[string]*yaml.Node, entries []modelEntry) error {
	allowed := methodParams[method]
	for _, name := range sortedNames(top) {
		if !slices.Contains(allowed, name) {
			return p.errf(top[name], "parameter %q does not apply to %s (mergekit would ignore it; editkit refuses it so the merge is what the file says). %s takes: %s", name, method, method, strings.Join(allowed, ", "))
		}
	}
	for _, e := range entries {
		for _, name := range sortedNames(e.params) {
			n := e.params[name]
			if !yamlParams[name].perModel {
				return p.errf(n, "model %q: parameter %q is a method parameter, which mergekit reads only from the top-level parameters and ignores per model: move it to the top-level parameters", e.ref, name)
			}
			if !slices.Contains(allowed, name) {
				return p.errf(n, "model %q: parameter %q does not apply to %s (mergekit would ignore it; editkit refuses it). %s takes: %s", e.ref, name, method, method, strings.Join(allowed, ", "))
			}
		}
	}
	return nil
}

// models parses the models: list.
func (p *yamlParser) models(n *yaml.Node) ([]modelEntry, error) {
	n = yamlDeref(n)
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "models must be a list of {model: PATH, parameters: {...}}")
	}
	if len(n.Content) == 0 {
		return nil, p.errf(n, "models is empty")
	}
	var out []modelEntry
	seen := map[string]bool{}
	for _, item := range n.Content {
		item = yamlDeref(item)
		if item.Kind != yaml.MappingNode {
			return nil, p.errf(item, "each models entry must be a mapping {model: PATH, parameters: {...}}")
		}
		e := modelEntry{node: item, params: map[string]*yaml.Node{}}
		var haveModel bool
		err := p.eachKey(item, func(k string, kn, v *yaml.Node) error {
			var err error
			switch k {
			case "model":
				haveModel = true
				e.ref, err = p.str(v, "model")
			case "parameters":
				e.params, err = p.params(v)
			default:
				err = p.errf(kn, "unknown key %q in a models entry (editkit accepts model and parameters)", k)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if !haveModel || e.ref == "" {
			return nil, p.errf(item, "models entry without a model path")
		}
		if seen[e.ref] {
			return nil, p.errf(item, "model %q is listed twice", e.ref)
		}
		seen[e.ref] = true
		for name, pn := range e.params {
			if err := p.scalarParam(pn, name, e.ref); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// params parses a parameters mapping, refusing unknown and unsupported
// names; the caller checks the values' form (scalarParam), naming the model.
func (p *yamlParser) params(n *yaml.Node) (map[string]*yaml.Node, error) {
	n = yamlDeref(n)
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "parameters must be a mapping of names to values")
	}
	out := map[string]*yaml.Node{}
	err := p.eachKey(n, func(k string, kn, v *yaml.Node) error {
		if why, ok := rejectedParams[k]; ok {
			return p.errf(kn, "parameter %q is not supported: %s", k, why)
		}
		if _, ok := yamlParams[k]; !ok {
			return p.errf(kn, "unknown parameter %q (editkit accepts %s)", k, strings.Join(sortedNames(yamlParams), ", "))
		}
		out[k] = v
		return nil
	})
	return out, err
}

// scalarParam refuses mergekit's gradient and conditional parameter forms.
func (p *yamlParser) scalarParam(v *yaml.Node, name, model string) error {
	v = yamlDeref(v)
	where := ""
	if model != "" {
		where = fmt.Sprintf("model %q: ", model)
	}
	switch v.Kind {
	case yaml.ScalarNode:
		return nil
	case yaml.SequenceNode:
		for _, item := range v.Content {
			if yamlDeref(item).Kind == yaml.MappingNode {
				return p.errf(v, "%sparameter %q given as a list of {filter, value} conditions; editkit supports scalar parameters only, the same for every tensor", where, name)
			}
		}
		return p.errf(v, "%sparameter %q given as a list (a layer gradient); editkit supports scalar parameters only", where, name)
	case yaml.MappingNode:
		return p.errf(v, "%sparameter %q given as a {filter, value} condition; editkit supports scalar parameters only, the same for every tensor", where, name)
	}
	return p.errf(v, "%sparameter %q has an unsupported form", where, name)
}

// eachKey visits a mapping's keys in order, refusing duplicates (which
// yaml.v3 keeps in a Node, and which mergekit's loader would resolve to the
// last one without a word).
func (p *yamlParser) eachKey(m *yaml.Node, fn func(k string, kn, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, v := m.Content[i], yamlDeref(m.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			return p.errf(kn, "keys must be plain names")
		}
		if seen[kn.Value] {
			return p.errf(kn, "key %q given twice", kn.Value)
		}
		seen[kn.Value] = true
		if err := fn(kn.Value, kn, v); err != nil {
			return err
		}
	}
	return nil
}

func (p *yamlParser) str(n *yaml.Node, name string) (string, error) {
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "") {
		return "", p.errf(n, "%s must be a string", name)
	}
	return strings.TrimSpace(n.Value), nil
}

func (p *yamlParser) float(n *yaml.Node, name string) (float64, error) {
	var v float64
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") || n.Decode(&v) != nil {
		return 0, p.errf(n, "parameter %q must be a number, got %q", name, n.Value)
	}
	return v, nil
}

func (p *yamlParser) bool(n *yaml.Node, name string) (bool, error) {
	var v bool
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		return false, p.errf(n, "parameter %q must be true or false, got %q", name, n.Value)
	}
	return v, nil
}

func (p *yamlParser) uint(n *yaml.Node, name string) (uint64, error) {
	var v uint64
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return 0, p.errf(n, "parameter %q must be a non-negative integer, got %q", name, n.Value)
	}
	return v, nil
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

func methodList() string {
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// cloneForValidate copies c deeply enough that Validate on the copy leaves c untouched.
func (c Config) cloneForValidate() Config {
	c.Weights = slices.Clone(c.Weights)
	c.Density = slices.Clone(c.Density)
	c.TallLambda = slices.Clone(c.TallLambda)
	if c.Lines != nil {
		l := *c.Lines
		c.Lines = &l
	}
	return c
}
