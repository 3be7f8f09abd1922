package merge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/editkit/editkit/tasks"
)

// Method names a merging method. Names follow mergekit where the method
// exists there.
type Method string

// The merging methods.
const (
	Linear          Method = "linear"
	TaskArithmetic  Method = "task_arithmetic"
	TIES            Method = "ties"
	DARELinear      Method = "dare_linear"
	DARETIES        Method = "dare_ties"
	Breadcrumbs     Method = "breadcrumbs"
	BreadcrumbsTIES Method = "breadcrumbs_ties"
	DELLA           Method = "della"
	DELLALinear     Method = "della_linear"
	SCE             Method = "sce"
	Consensus       Method = "consensus"
	ModelStock      Method = "model_stock"
	SLERP           Method = "slerp"
	NuSLERP         Method = "nuslerp"
	Karcher         Method = "karcher"
	MultiSLERP      Method = "multislerp"
	ArceeFusion     Method = "arcee_fusion"
	Passthrough     Method = "passthrough"
)

// sparsifier is the first stage of a task-vector method.
type sparsifier int

const (
	noSparsify sparsifier = iota
	magnitude             // TIES trim: top density by |τ|
	random                // DARE: drop with probability 1 − density
	outliers              // Breadcrumbs: drop the largest gamma and the smallest
	magprune              // DELLA: drop with a probability that falls with |τ|'s rank
)

// baseUse says what a method does with base_model.
type baseUse int

const (
	// baseRequired: task vectors are taken against the base.
	baseRequired baseUse = iota
	// baseOptional: with a base the method works on task vectors, without
	// one on the models themselves.
	baseOptional
	// baseAveraged: the base takes part like any other model (karcher;
	// linear when listed under models).
	baseAveraged
	// baseNone: the method reads no base (passthrough).
	baseNone
)

// dflt is a parameter's default under one semantics.
type dflt struct {
	// v is the default value; nil leaves the parameter unset.
	v any
	// required, when not empty, makes the parameter mandatory and says why.
	required string
}

// use is a parameter a method reads, with its defaults.
type use struct {
	name            string
	paper, mergekit dflt
	// paperOnly: the command line (and a YAML extension) only; mergekit's
	// definition of the method has no such parameter.
	paperOnly bool
	// mergekitOnly: the papers' definition has no such parameter.
	mergekitOnly bool
	// noEffect: mergekit's method declares the parameter but its result
	// does not depend on it (density for task_arithmetic, int8_mask).
	noEffect bool
}

func same(v any) (d dflt) { d.v = v; return d }

// methodRow is one method: the parameters it reads and the stages it runs.
// A new method is a row plus its stage functions.
type methodRow struct {
	method    Method
	pretty    string
	reference string // paper and reference code
	params    []use
	base      baseUse
	// minModels and maxModels bound the merged models, the base not
	// counted (maxModels 0: no bound).
	minModels, maxModels int
	// cli: the method can be run from command-line flags.
	cli bool
	// taskVectors: the method combines task vectors into Δ and writes
	// θ_0 + λ Δ; otherwise merge computes θ directly.
	taskVectors bool
	sparsify    sparsifier
	// signs: TIES's sign election and disjoint merge combine the vectors.
	signs bool
	// whole: every chunk must be a whole tensor.
	whole bool
	// combine replaces the generic combination of task vectors (consensus,
	// sce) and computes Δ into dst.
	combine func(p *plan, w int, c *tasks.Chunk, tp *tensorParams, dst []float32) error
	// merge computes θ of a method that does not go through task vectors.
	merge func(p *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error
}

var (
	useWeightGTA = use{name: "weight", paper: same(1.0), mergekit: dflt{required: "mergekit requires a weight for every model"}}
	useLambda    = use{name: "lambda", paper: same(1.0), mergekit: same(1.0)}
	useInt8      = use{name: "int8_mask", mergekit: same(false), noEffect: true, mergekitOnly: true}
	useSeed      = use{name: "seed", paper: same(uint64(0)), mergekit: same(uint64(0))}
	useAggregate = use{name: "ties_aggregate", paper: same("mean"), paperOnly: true}
)

func gtaUses(density dflt, normalize, rescale bool, extra ...use) []use {
	u := []use{
		useWeightGTA,
		{name: "density", paper: density, mergekit: same(1.0)},
		useLambda,
		{name: "normalize", mergekit: same(normalize), mergekitOnly: true},
		{name: "rescale", mergekit: same(rescale), mergekitOnly: true},
		useInt8,
	}
	return append(u, extra...)
}

var densityRequired = dflt{required: "it is the fraction of entries kept"}

// methods is the method table.
var methods = []*methodRow{
	{method: Linear, pretty: "Linear (model soup)", reference: "Wortsman et al. 2022; mergekit linear",
		params: []use{
			{name: "weight", paper: same(1.0), mergekit: dflt{required: "mergekit requires a weight for every model"}},
			{name: "normalize", paper: same(true), mergekit: same(true)},
		},
		base: baseAveraged, minModels: 1, cli: true, merge: mergeLinear},
	{method: TaskArithmetic, pretty: "Task Arithmetic", reference: "Ilharco et al. 2023, mlfoundations/task_vectors",
		params: []use{
			useWeightGTA,
			{name: "lambda", paper: dflt{required: "the papers choose it on validation data, typically 0.3–0.4 for 8 tasks"}, mergekit: same(1.0)},
			{name: "normalize", mergekit: same(false), mergekitOnly: true},
			{name: "density", mergekit: same(1.0), noEffect: true, mergekitOnly: true},
			{name: "rescale", mergekit: same(false), noEffect: true, mergekitOnly: true},
			useInt8,
		},
		minModels: 1, cli: true, taskVectors: true},
	{method: TIES, pretty: "TIES", reference: "Yadav et al. 2023, prateeky2806/ties-merging",
		params: gtaUses(same(defaultTIESDensity), true, false,
			use{name: "ties_scope", paper: same(ScopeModel), mergekit: same(ScopeTensor)}, useAggregate),
		minModels: 1, cli: true, taskVectors: true, sparsify: magnitude, signs: true},
	{method: DARETIES, pretty: "DARE-TIES", reference: "Yu et al. 2024",
		params:    gtaUses(densityRequired, false, true, useSeed, useAggregate),
		minModels: 1, cli: true, taskVectors: true, sparsify: random, signs: true},
	{method: DARELinear, pretty: "DARE", reference: "Yu et al. 2024",
		params:    gtaUses(densityRequired, false, true, useSeed),
		minModels: 1, cli: true, taskVectors: true, sparsify: random},
	{method: Breadcrumbs, pretty: "Model Breadcrumbs", reference: "Davari & Belilovsky 2024; mergekit magnitude_outliers",
		params:    gtaUses(densityRequired, false, false, use{name: "gamma", paper: same(defaultGamma), mergekit: same(defaultGamma)}),
		minModels: 1, cli: true, taskVectors: true, sparsify: outliers, whole: true},
	{method: BreadcrumbsTIES, pretty: "Model Breadcrumbs with TIES", reference: "Davari & Belilovsky 2024; mergekit magnitude_outliers",
		params:    gtaUses(densityRequired, false, false, use{name: "gamma", paper: same(defaultGamma), mergekit: same(defaultGamma)}, useAggregate),
		minModels: 1, cli: true, taskVectors: true, sparsify: outliers, signs: true, whole: true},
	{method: DELLA, pretty: "DELLA", reference: "Deep et al. 2024; mergekit della_magprune",
		params:    gtaUses(same(1.0), true, true, use{name: "epsilon", paper: same(defaultEpsilon), mergekit: same(defaultEpsilon)}, useSeed),
		minModels: 1, cli: true, taskVectors: true, sparsify: magprune, signs: true, whole: true},
	{method: DELLALinear, pretty: "DELLA (linear)", reference: "Deep et al. 2024; mergekit della_magprune",
		params:    gtaUses(same(1.0), false, true, use{name: "epsilon", paper: same(defaultEpsilon), mergekit: same(defaultEpsilon)}, useSeed),
		minModels: 1, cli: true, taskVectors: true, sparsify: magprune, whole: true},
	{method: SCE, pretty: "SCE", reference: "Wan et al. 2024 (FuseChat); mergekit sce",
		params:    []use{{name: "select_topk", paper: same(1.0), mergekit: same(1.0)}, useInt8},
		minModels: 1, cli: true, taskVectors: true, whole: true, combine: combineSCE},
	{method: Consensus, pretty: "Consensus (TALL masks)", reference: "Wang et al. 2024, nik-dim/tall_masks",
		params: []use{
			{name: "lambda", paper: dflt{required: "it is chosen on validation data in the paper"}},
			{name: "k", paper: same(defaultK)},
			{name: "tall_lambda", paper: same(defaultTallLambda)},
			{name: "consensus_base", paper: same("ta")},
			{name: "density", paper: same(defaultTIESDensity)},
		},
		minModels: 1, cli: true, taskVectors: true, combine: combineConsensus},
	{method: ModelStock, pretty: "Model Stock", reference: "Jang et al. 2024; mergekit model_stock",
		params:    []use{{name: "filter_wise", paper: same(false), mergekit: same(false)}},
		minModels: 2, cli: true, whole: true, merge: mergeModelStock},
	{method: SLERP, pretty: "SLERP", reference: "Shoemake 1985; mergekit slerp",
		params:    []use{{name: "t", paper: dflt{required: "0 gives the base, 1 the other model"}, mergekit: dflt{required: "0 gives the base, 1 the other model"}}},
		minModels: 1, maxModels: 1, cli: true, whole: true, merge: mergeSLERP},
	{method: NuSLERP, pretty: "NuSLERP", reference: "mergekit nuslerp",
		params: []use{
			{name: "weight", paper: same(1.0), mergekit: dflt{required: "mergekit requires a weight for every model"}},
			{name: "nuslerp_row_wise", paper: same(false), mergekit: same(false)},
			{name: "nuslerp_flatten", paper: same(true), mergekit: same(true)},
		},
		base: baseOptional, minModels: 2, maxModels: 2, cli: true, whole: true, merge: mergeNuSLERP},
	{method: Karcher, pretty: "Karcher mean", reference: "Karcher 1977; mergekit karcher",
		params: []use{
			{name: "max_iter", paper: same(10), mergekit: same(10)},
			{name: "tol", paper: same(1e-5), mergekit: same(1e-5)},
		},
		base: baseAveraged, minModels: 1, cli: true, whole: true, merge: mergeKarcher},
	{method: MultiSLERP, pretty: "Multi-SLERP", reference: "mergekit multislerp",
		params: []use{
			{name: "weight", paper: same(1.0), mergekit: dflt{required: "mergekit requires a weight for every model"}},
			{name: "normalize_weights", paper: same(true), mergekit: same(true)},
			{name: "eps", paper: same(1e-8), mergekit: same(1e-8)},
		},
		base: baseOptional, minModels: 1, cli: true, whole: true, merge: mergeMultiSLERP},
	{method: ArceeFusion, pretty: "Arcee Fusion", reference: "mergekit arcee_fusion",
		minModels: 1, maxModels: 1, cli: true, whole: true, merge: mergeArceeFusion},
	{method: Passthrough, pretty: "Passthrough", reference: "mergekit passthrough",
		params: []use{{name: "scale", mergekit: dflt{}}},
		base:   baseNone, minModels: 1, maxModels: 1, merge: mergePassthrough},
}

// defaults used by several rows.
const (
	defaultTIESDensity = 0.2  // TIES: top-20% (K=20)
	defaultGamma       = 0.01 // Breadcrumbs (mergekit)
	defaultEpsilon     = 0.15 // DELLA (mergekit)
	defaultK           = 2    // Consensus: kept by ≥ 2 masks
	defaultTallLambda  = 0.4  // middle of the TALL-mask grid {0.2, ..., 0.6}
)

// Methods lists every method, in the table's order.
func Methods() []Method {
	out := make([]Method, len(methods))
	for i, r := range methods {
		out[i] = r.method
	}
	return out
}

// MethodNames joins the method names with ", ".
func MethodNames() string {
	names := make([]string, len(methods))
	for i, r := range methods {
		names[i] = string(r.method)
	}
	return strings.Join(names, ", ")
}

func rowOf(m Method) *methodRow {
	for _, r := range methods {
		if r.method == m {
			return r
		}
	}
	return nil
}

// ParseMethod parses a method name.
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ToLower(strings.TrimSpace(s)))
	if rowOf(m) != nil {
		return m, nil
	}
	return "", fmt.Errorf("unknown merge method %q (known: %s)", s, MethodNames())
}

// Uses reports whether the method reads the named parameter under the
// semantics (for parameters mergekit declares but ignores, see Affects).
func (m Method) Uses(param string, sem Semantics) bool {
	return rowOf(m).use(param).in(sem)
}

// Affects reports whether the parameter can change the method's result.
func (m Method) Affects(param string, sem Semantics) bool {
	u := rowOf(m).use(param)
	return u.in(sem) && !u.noEffect
}

// in reports whether the parameter exists under the semantics.
func (u *use) in(sem Semantics) bool {
	return u != nil && !(sem == Paper && u.mergekitOnly) && !(sem == Mergekit && u.paperOnly)
}

// ParamNames lists the parameters that change the method's result under
// the semantics.
func (m Method) ParamNames(sem Semantics) []string {
	var out []string
	for _, u := range rowOf(m).params {
		if m.Affects(u.name, sem) {
			out = append(out, u.name)
		}
	}
	return out
}

// CLI reports whether the method can run from command-line flags.
func (m Method) CLI() bool { return rowOf(m).cli }

func (r *methodRow) use(name string) *use {
	if r == nil {
		return nil
	}
	for i := range r.params {
		if r.params[i].name == name {
			return &r.params[i]
		}
	}
	return nil
}

// electsSign reports whether TIES's sign election combines the vectors.
func (m Method) electsSign() bool { return rowOf(m).signs }

// DefaultText describes the parameter's defaults across the methods, for
// --help: "0.2 for ties; required for dare_linear, dare_ties, ...".
func (p *Param) DefaultText(sem Semantics) string {
	// Methods the parameter does not affect are left out, unless it affects
	// none (int8_mask): then its declared default is still what to show.
	affects := false
	for _, r := range methods {
		affects = affects || r.method.Affects(p.Name, sem)
	}
	byText := map[string][]string{}
	var order []string
	for _, r := range methods {
		u := r.use(p.Name)
		if !u.in(sem) || (u.noEffect && affects) || (sem == Paper && !r.cli) {
			continue
		}
		d := u.paper
		if sem == Mergekit && r.method != Consensus { // consensus has one definition, the paper's
			d = u.mergekit
		}
		var text string
		switch {
		case d.required != "":
			text = "required"
		case d.v == nil:
			text = "none"
		default:
			text = formatValue(d.v)
		}
		if _, ok := byText[text]; !ok {
			order = append(order, text)
		}
		byText[text] = append(byText[text], string(r.method))
	}
	switch len(order) {
	case 0:
		return "none"
	case 1:
		return order[0]
	}
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = t + " for " + strings.Join(byText[t], ", ")
	}
	return strings.Join(parts, "; ")
}

// MethodsUsing lists the methods that read the parameter under sem.
func (p *Param) MethodsUsing(sem Semantics) []Method {
	var out []Method
	for _, r := range methods {
		if r.method.Affects(p.Name, sem) && (sem == Mergekit || r.cli) {
			out = append(out, r.method)
		}
	}
	if p.Name == "lines_alpha" || p.Name == "lines_beta" {
		for _, r := range methods {
			if r.cli && !slices.Contains(out, r.method) {
				out = append(out, r.method)
			}
		}
	}
	return out
}
