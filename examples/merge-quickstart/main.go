// Command merge-quickstart shows editkit's whole merge workflow on a small
// synthetic model family, with no downloads:
//
//	go run ./examples/merge-quickstart [--out DIR] [--keep] [--json] [--seed N]
//
// It writes a base model and three "fine-tuned" models in Hugging Face LLaMA
// naming (safetensors, BF16), inspects the base, builds the three task
// vectors, prints their cosine-similarity matrix, merges the fine-tuned
// models with seven recipes and measures, for each merged model, how much of
// each task's signal it kept, how it resolved sign conflicts and how much
// fine-tuning noise it let through. Every step calls the checkpoint, tasks
// and merge packages directly and prints the equivalent editkit command.
// README.md explains the construction and the numbers.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/tasks"
)

func main() {
	// An interrupted run removes the checkpoint it was writing.
	sig := checkpoint.ExitOnSignal(os.Stderr, "merge-quickstart")
	var o options
	flag.StringVar(&o.Out, "out", "", "folder for the models (must be new or empty; default: a fresh temporary folder)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the folder at the end (default: remove it)")
	flag.BoolVar(&o.JSON, "json", false, "print the result table as JSON on stdout (the walkthrough goes to stderr)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the synthetic model family")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "merge-quickstart: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	o.Log = os.Stdout
	if o.JSON {
		o.Log = os.Stderr
	}
	r, err := run(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "merge-quickstart: %v\n", err)
		sig.Exit(1)
	}
	if o.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "merge-quickstart: %v\n", err)
			os.Exit(1)
		}
	}
}

// options configure a run. Zero sizes take the defaults below.
type options struct {
	Out  string
	Keep bool
	JSON bool
	Seed uint64
	// Log receives the walkthrough (nil: discarded).
	Log io.Writer
	// Model size: LLaMA-style blocks of width Hidden, MLP width Inter.
	Layers, Hidden, Inter, Vocab int
	// Merges replaces the default list of recipes (tests add their own).
	Merges []mergeSpec
}

// The synthetic family: 3 tasks; on each weight-matrix coordinate, task t
// owns it with probability pSignal (its τ_t is large there), all tasks
// conflict in sign with probability pConflict, and every task adds small
// independent noise everywhere.
const (
	numTasks    = 3
	pSignal     = 0.12  // per task: 36% of coordinates are some task's signal
	pConflict   = 0.04  // 2 tasks push one way, 1 the other
	baseStd     = 0.02  // θ_base ~ N(0, 0.02²), as LLaMA's initializer
	signalScale = 0.01  // |signal| = 0.01·(0.5 + |z|)
	noiseStd    = 0.002 // noise ~ N(0, 0.002²), independent per task
)

// Coordinate categories.
const (
	catNoise    int8 = -1 // no task's signal: only noise
	catConflict int8 = numTasks
	// 0 ≤ cat < numTasks: signal of task cat.
)

// report is what a run found; --json prints it.
type report struct {
	Dir    string      `json:"dir"`
	Model  modelInfo   `json:"model"`
	Cosine [][]float64 `json:"task_vector_cosine"`
	Rows   []row       `json:"merges"`
}

type modelInfo struct {
	Layout     string  `json:"layout"`
	Blocks     int     `json:"blocks"`
	Tensors    int     `json:"tensors"`
	Params     int64   `json:"params"`
	SignalFrac float64 `json:"signal_fraction_per_task"`
	ConflFrac  float64 `json:"conflict_fraction"`
	NoiseFrac  float64 `json:"noise_fraction"`
}

// row is one merge's line of the table.
type row struct {
	Name string `json:"name"`
	CLI  string `json:"cli"`
	// Retention[t] is cos(Δ, τ_t) on task t's signal coordinates, Gain[t]
	// the projection ⟨Δ, τ_t⟩/‖τ_t‖² there (1: τ_t arrives at full
	// strength), Δ = θ_merged − θ_base.
	Retention []float64 `json:"retention_cos"`
	Gain      []float64 `json:"gain"`
	// Conflict is cos(Δ, majority) on the sign-conflict coordinates, the
	// majority being the mean τ of the two tasks that agree.
	Conflict float64 `json:"conflict_cos"`
	// Noise is ‖Δ‖ on coordinates of no task over the RMS of ‖τ_t‖ there.
	Noise float64 `json:"noise"`
	// GainMean is the mean of Gain; GainPerNoise is GainMean/Noise, which λ
	// does not change (it scales both).
	GainMean     float64        `json:"gain_mean"`
	GainPerNoise float64        `json:"gain_per_noise"`
	Passes       int            `json:"passes"`
	Seconds      float64        `json:"seconds"`
	Params       map[string]any `json:"params"`
	SHA256       string         `json:"sha256"`
}

// mergeSpec is a recipe: the merge.Config and the CLI flags that say the same.
type mergeSpec struct {
	Name   string
	Flags  string
	Config func() *merge.Config
}

func f64(v float64) *float64 { return &v }

// defaultMerges are the recipes the quickstart compares.
func defaultMerges() []mergeSpec {
	return []mergeSpec{
		{"linear", "--method linear", func() *merge.Config {
			return &merge.Config{Method: merge.Linear}
		}},
		{"task_arithmetic", "--method task_arithmetic --lambda 0.4", func() *merge.Config {
			return &merge.Config{Method: merge.TaskArithmetic, Lambda: f64(0.4)}
		}},
		{"ties", "--method ties", func() *merge.Config {
			return &merge.Config{Method: merge.TIES} // density 0.2, λ = 1
		}},
		{"dare_ties", "--method dare_ties --density 0.5 --seed 0", func() *merge.Config {
			return &merge.Config{Method: merge.DARETIES, Density: []float64{0.5}, Seed: 0}
		}},
		{"consensus", "--method consensus --lambda 1 --k 2", func() *merge.Config {
			k := 2
			return &merge.Config{Method: merge.Consensus, Lambda: f64(1), K: &k}
		}},
		{"model_stock", "--method model_stock", func() *merge.Config {
			return &merge.Config{Method: merge.ModelStock}
		}},
		{"ta+lines", "--method task_arithmetic --lines-beta 0.5", func() *merge.Config {
			return &merge.Config{Method: merge.TaskArithmetic, Lines: &merge.Lines{Beta: f64(0.5)}}
		}},
	}
}

// family is the synthetic model family on disk, with the ground truth the
// table is measured against.
type family struct {
	base   string
	fts    []string
	tvs    []string
	cats   map[string][]int8 // per weight matrix: each coordinate's category
	minor  map[string][]int8 // on conflict coordinates: the dissenting task
	counts [numTasks + 2]int64
}

// run is the whole quickstart.
func run(o options) (*report, error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	if o.Layers == 0 {
		o.Layers, o.Hidden, o.Inter, o.Vocab = 4, 64, 176, 512
	}
	if o.Merges == nil {
		o.Merges = defaultMerges()
	}
	dir, err := prepareDir(o.Out)
	if err != nil {
		return nil, err
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(log, "editkit merge quickstart: models go to\n\n  DIR=%s\n\n", dir)

	fmt.Fprintf(log, "== 1. A synthetic model family (LLaMA naming, BF16): base + %d fine-tuned models\n", numTasks)
	fam, err := writeFamily(dir, o)
	if err != nil {
		return nil, err
	}
	r := &report{Dir: dir}
	var total int64
	for _, n := range fam.counts {
		total += n
	}
	r.Model.SignalFrac = float64(fam.counts[0]) / float64(total)
	r.Model.ConflFrac = float64(fam.counts[numTasks]) / float64(total)
	r.Model.NoiseFrac = float64(fam.counts[numTasks+1]) / float64(total)
	fmt.Fprintf(log, "  wrote $DIR/base (with config.json) and $DIR/ft-1 .. ft-%d\n", numTasks)
	fmt.Fprintf(log, "  weight-matrix coordinates: %.1f%% signal of each task (disjoint), %.1f%% sign conflicts, %.1f%% noise only\n\n",
		100*r.Model.SignalFrac, 100*r.Model.ConflFrac, 100*r.Model.NoiseFrac)

	fmt.Fprintf(log, "== 2. Inspect the base\n  $ editkit inspect $DIR/base\n")
	if err := inspectBase(log, fam.base, &r.Model); err != nil {
		return nil, err
	}

	fmt.Fprintf(log, "\n== 3. Task vectors τ_t = θ_t − θ_base\n")
	for i, ft := range fam.fts {
		fmt.Fprintf(log, "  $ editkit taskvector --base $DIR/base --finetuned $DIR/ft-%d -o $DIR/tv-%d\n", i+1, i+1)
		if err := buildTaskVector(fam.base, ft, fam.tvs[i]); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(log, "\n== 4. Cosine similarity of the task vectors\n  $ editkit cosine --base $DIR/base $DIR/tv-1 $DIR/tv-2 $DIR/tv-3\n")
	if r.Cosine, err = cosine(fam.base, fam.tvs); err != nil {
		return nil, err
	}
	printCosine(log, r.Cosine)

	fmt.Fprintf(log, "\n== 5. Merge the fine-tuned models\n")
	for _, spec := range o.Merges {
		out := filepath.Join(dir, "merged", spec.Name)
		cli := fmt.Sprintf("editkit merge --base $DIR/base --models $DIR/ft-1 $DIR/ft-2 $DIR/ft-3 %s -o $DIR/merged/%s", spec.Flags, spec.Name)
		fmt.Fprintf(log, "  $ %s\n", cli)
		rw, err := mergeAndMeasure(fam, spec, out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Name, err)
		}
		rw.CLI = cli
		r.Rows = append(r.Rows, *rw)
	}
	if len(o.Merges) > 0 {
		cfg := filepath.Join(dir, "merged", o.Merges[0].Name, "config.json")
		if _, err := os.Stat(cfg); err != nil {
			return nil, fmt.Errorf("the base's config.json was not copied to the merged model: %w", err)
		}
		fmt.Fprintf(log, "  (each merged folder got the base's config.json: $DIR/merged/%s/config.json)\n", o.Merges[0].Name)
	}

	fmt.Fprintf(log, "\n== 6. What each merge kept (README.md explains the columns)\n\n")
	printTable(log, r.Rows, r.Cosine)
	fmt.Fprintf(log, "\ndone in %.2fs", time.Since(start).Seconds())
	if o.Keep {
		fmt.Fprintf(log, "; the models stay in %s\n", dir)
	} else {
		fmt.Fprintf(log, "; removed %s (pass --keep to keep it)\n", dir)
	}
	return r, nil
}

// prepareDir returns the output folder: a new temporary one, or out when it
// does not exist yet or is empty (the quickstart removes it at the end, so
// it never takes a folder holding anything).
func prepareDir(out string) (string, error) {
	if out == "" {
		return os.MkdirTemp("", "editkit-quickstart-")
	}
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", err
		}
	case err != nil:
		return "", fmt.Errorf("--out %s: %w", out, err)
	case len(entries) > 0:
		return "", fmt.Errorf("--out %s is not empty: give a new or empty folder", out)
	}
	return filepath.Abs(out)
}

// tensorDef is one tensor of the synthetic architecture.
type tensorDef struct {
	name   string
	shape  []int64
	matrix bool // weight matrices are fine-tuned; norm scales stay at 1
}

// llamaTensors lists a LLaMA model's tensors in Hugging Face naming.
func llamaTensors(o options) []tensorDef {
	h, in, v := int64(o.Hidden), int64(o.Inter), int64(o.Vocab)
	defs := []tensorDef{{"model.embed_tokens.weight", []int64{v, h}, true}}
	for i := range o.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		defs = append(defs,
			tensorDef{p + "self_attn.q_proj.weight", []int64{h, h}, true},
			tensorDef{p + "self_attn.k_proj.weight", []int64{h, h}, true},
			tensorDef{p + "self_attn.v_proj.weight", []int64{h, h}, true},
			tensorDef{p + "self_attn.o_proj.weight", []int64{h, h}, true},
			tensorDef{p + "mlp.gate_proj.weight", []int64{in, h}, true},
			tensorDef{p + "mlp.up_proj.weight", []int64{in, h}, true},
			tensorDef{p + "mlp.down_proj.weight", []int64{h, in}, true},
			tensorDef{p + "input_layernorm.weight", []int64{h}, false},
			tensorDef{p + "post_attention_layernorm.weight", []int64{h}, false},
		)
	}
	return append(defs,
		tensorDef{"model.norm.weight", []int64{h}, false},
		tensorDef{"lm_head.weight", []int64{v, h}, true})
}

// writeFamily writes the base and the fine-tuned models tensor by tensor,
// all four at once, and records each coordinate's category.
func writeFamily(dir string, o options) (*family, error) {
	fam := &family{base: filepath.Join(dir, "base"), cats: map[string][]int8{}, minor: map[string][]int8{}}
	for i := range numTasks {
		fam.fts = append(fam.fts, filepath.Join(dir, fmt.Sprintf("ft-%d", i+1)))
		fam.tvs = append(fam.tvs, filepath.Join(dir, fmt.Sprintf("tv-%d", i+1)))
	}
	defs := llamaTensors(o)
	specs := make([]checkpoint.TensorSpec, len(defs))
	for i, d := range defs {
		specs[i] = checkpoint.TensorSpec{Name: d.name, DType: checkpoint.BF16, Shape: d.shape}
	}
	var ws []*checkpoint.Writer
	defer func() {
		for _, w := range ws {
			w.Abort() // no-op after Commit
		}
	}()
	for _, path := range append([]string{fam.base}, fam.fts...) {
		w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{})
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	config, err := json.MarshalIndent(map[string]any{
		"architectures":       []string{"LlamaForCausalLM"},
		"model_type":          "llama",
		"hidden_size":         o.Hidden,
		"intermediate_size":   o.Inter,
		"num_hidden_layers":   o.Layers,
		"num_attention_heads": max(o.Hidden/16, 1),
		"vocab_size":          o.Vocab,
		"rms_norm_eps":        1e-6,
		"torch_dtype":         "bfloat16",
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := ws[0].AddFile("config.json", append(config, '\n')); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	for _, d := range defs {
		n := int64(1)
		for _, s := range d.shape {
			n *= s
		}
		base := make([]float32, n)
		fts := make([][]float32, numTasks)
		for t := range fts {
			fts[t] = make([]float32, n)
		}
		var cat, minor []int8
		if d.matrix {
			cat, minor = make([]int8, n), make([]int8, n)
		}
		large := func() float64 { return signalScale * (0.5 + math.Abs(rng.NormFloat64())) }
		for k := range base {
			if !d.matrix {
				base[k] = 1
				for t := range fts {
					fts[t][k] = 1
				}
				continue
			}
			b := bf16(baseStd * rng.NormFloat64())
			base[k] = b
			var tau [numTasks]float64
			for t := range tau {
				tau[t] = noiseStd * rng.NormFloat64()
			}
			u := rng.Float64()
			switch {
			case u < numTasks*pSignal:
				owner := int(u / pSignal)
				cat[k] = int8(owner)
				tau[owner] += sign(rng.Float64()-0.5) * large()
			case u < numTasks*pSignal+pConflict:
				cat[k] = catConflict
				dir := sign(rng.Float64() - 0.5)
				m := rng.IntN(numTasks)
				minor[k] = int8(m)
				for t := range tau {
					if t == m {
						tau[t] -= dir * large()
					} else {
						tau[t] += dir * large()
					}
				}
			default:
				cat[k] = catNoise
			}
			for t := range fts {
				fts[t][k] = b + float32(tau[t]) // rounded to BF16 when written
			}
		}
		if d.matrix {
			fam.cats[d.name], fam.minor[d.name] = cat, minor
			for _, c := range cat {
				if c == catNoise {
					fam.counts[numTasks+1]++
				} else {
					fam.counts[c]++
				}
			}
		}
		if err := ws[0].WriteFloat32(d.name, base); err != nil {
			return nil, err
		}
		for t := range fts {
			if err := ws[t+1].WriteFloat32(d.name, fts[t]); err != nil {
				return nil, err
			}
		}
	}
	for _, w := range ws {
		if err := w.Commit(); err != nil {
			return nil, err
		}
	}
	return fam, nil
}

// bf16 rounds v to the nearest bfloat16, so the base holds exactly the
// values generated.
func bf16(v float64) float32 {
	return math.Float32frombits(uint32(checkpoint.BFloat16Bits(float32(v))) << 16)
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}

// inspectBase prints what editkit inspect shows: tensors, dtypes and the
// residual-block layout that LiNeS uses.
func inspectBase(log io.Writer, path string, info *modelInfo) error {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	defer ck.Close()
	var names []string
	dtypes := map[string]int{}
	for _, t := range ck.Tensors() {
		names = append(names, t.Name)
		info.Params += t.NumElements()
		dtypes[t.DType.String()]++
	}
	info.Tensors = len(names)
	layout, err := checkpoint.NewLayout(names, "")
	if err != nil {
		return err
	}
	info.Layout = layout.Family
	_, sizes := ck.Files()
	fmt.Fprintf(log, "  %d tensors, %d parameters, %d bytes; dtypes:", info.Tensors, info.Params, sizes[0])
	for _, d := range slices.Sorted(maps.Keys(dtypes)) {
		fmt.Fprintf(log, " %s ×%d", d, dtypes[d])
	}
	fmt.Fprintf(log, "\n  layout %s:", layout.Family)
	stacks := layout.Stacks()
	for _, s := range slices.Sorted(maps.Keys(stacks)) {
		fmt.Fprintf(log, " %s0..%d (%d blocks)", s, stacks[s]-1, stacks[s])
		info.Blocks += stacks[s]
	}
	fmt.Fprintln(log)
	return nil
}

// buildTaskVector writes τ = θ_ft − θ_base as a float32 task vector.
func buildTaskVector(base, ft, out string) error {
	s, err := tasks.OpenSet(base, []string{ft})
	if err != nil {
		return err
	}
	defer s.Close()
	return tasks.Build(s, out, tasks.WriteOptions{}, tasks.StreamOptions{})
}

// cosine is the pairwise cosine similarity of the stored task vectors.
func cosine(base string, tvs []string) ([][]float64, error) {
	s, err := tasks.OpenSet(base, tvs)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stats, err := tasks.Stats(s, tasks.StreamOptions{})
	if err != nil {
		return nil, err
	}
	return tasks.Cosine(stats), nil
}

func printCosine(log io.Writer, cos [][]float64) {
	tw := tabwriter.NewWriter(log, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t\t")
	for j := range cos {
		fmt.Fprintf(tw, "tv-%d\t", j+1)
	}
	fmt.Fprintln(tw)
	for i, r := range cos {
		fmt.Fprintf(tw, "\ttv-%d\t", i+1)
		for _, v := range r {
			fmt.Fprintf(tw, "%.3f\t", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// mergeAndMeasure runs one recipe on the fine-tuned models and measures the
// merged model against the family's ground truth.
func mergeAndMeasure(fam *family, spec mergeSpec, out string) (*row, error) {
	s, err := tasks.OpenSet(fam.base, fam.fts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	start := time.Now()
	res, err := merge.Run(s, spec.Config(), out, tasks.WriteOptions{}, tasks.StreamOptions{})
	if err != nil {
		return nil, err
	}
	rw := &row{Name: spec.Name, Passes: res.Passes, Seconds: time.Since(start).Seconds(), Params: res.Params}
	if err := measure(fam, out, rw); err != nil {
		return nil, err
	}
	if rw.SHA256, err = hashCheckpoint(out); err != nil {
		return nil, err
	}
	return rw, nil
}

// measure fills the row's retention, gain, conflict and noise columns. It
// streams the set {merged model, τ_1, τ_2, τ_3} against the base, so each
// chunk holds Δ = θ_merged − θ_base next to the task vectors.
func measure(fam *family, merged string, rw *row) error {
	s, err := tasks.OpenSet(fam.base, append([]string{merged}, fam.tvs...))
	if err != nil {
		return err
	}
	defer s.Close()
	var sig [numTasks]struct{ dt, dd, tt float64 }
	var conf struct{ dm, dd, mm float64 }
	var noise struct{ dd, tt float64 }
	// One worker: the sums below are taken in a fixed order, so the table is
	// the same from run to run (tasks.Ordered does this for parallel scans).
	err = s.Scan(tasks.StreamOptions{Workers: 1}, func(_ int, c *tasks.Chunk) error {
		cat, minor := fam.cats[c.Tensor.Name], fam.minor[c.Tensor.Name]
		if cat == nil {
			return nil
		}
		delta, taus := c.Taus[0], c.Taus[1:]
		for k, d64 := range delta {
			d := float64(d64)
			g := c.Start + int64(k)
			switch ct := cat[g]; {
			case ct == catNoise:
				noise.dd += d * d
				for _, tau := range taus {
					noise.tt += float64(tau[k]) * float64(tau[k])
				}
			case ct == catConflict:
				var m float64
				for t, tau := range taus {
					if t != int(minor[g]) {
						m += float64(tau[k]) / (numTasks - 1)
					}
				}
				conf.dm += d * m
				conf.dd += d * d
				conf.mm += m * m
			default:
				tv := float64(taus[ct][k])
				sig[ct].dt += d * tv
				sig[ct].dd += d * d
				sig[ct].tt += tv * tv
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, a := range sig {
		rw.Retention = append(rw.Retention, cos(a.dt, a.dd, a.tt))
		rw.Gain = append(rw.Gain, a.dt/a.tt)
	}
	rw.Conflict = cos(conf.dm, conf.dd, conf.mm)
	rw.Noise = math.Sqrt(noise.dd / (noise.tt / numTasks))
	for _, g := range rw.Gain {
		rw.GainMean += g / numTasks
	}
	if rw.Noise > 0 {
		rw.GainPerNoise = rw.GainMean / rw.Noise
	}
	return nil
}

// cos is ab/√(aa·bb), 0 when a vector is zero.
func cos(ab, aa, bb float64) float64 {
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// hashCheckpoint is the SHA-256 of a checkpoint's files, in order.
func hashCheckpoint(path string) (string, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return "", err
	}
	paths, _ := ck.Files()
	ck.Close()
	h := sha256.New()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func printTable(log io.Writer, rows []row, cosine [][]float64) {
	head := []string{"method"}
	for t := range numTasks {
		head = append(head, fmt.Sprintf("cos[%d]", t+1))
	}
	table := [][]string{append(head, "gain", "conflict", "noise", "gain/noise", "passes", "ms")}
	for _, r := range rows {
		cells := []string{r.Name}
		for t := range numTasks {
			cells = append(cells, fmt.Sprintf("%.3f", r.Retention[t]))
		}
		table = append(table, append(cells, fmt.Sprintf("%.3f", r.GainMean), fmt.Sprintf("%.3f", r.Conflict),
			fmt.Sprintf("%.3f", r.Noise), fmt.Sprintf("%.2f", r.GainPerNoise), fmt.Sprint(r.Passes), fmt.Sprintf("%.0f", 1000*r.Seconds)))
	}
	var width []int
	for _, cells := range table {
		for j, c := range cells {
			if j == len(width) {
				width = append(width, 0)
			}
			width[j] = max(width[j], len(c))
		}
	}
	for _, cells := range table {
		fmt.Fprintf(log, "  %-*s", width[0], cells[0])
		for j, c := range cells[1:] {
			fmt.Fprintf(log, "  %*s", width[j+1], c)
		}
		fmt.Fprintln(log)
	}
	// What the passes computed from the data.
	fmt.Fprintln(log)
	for _, r := range rows {
		if thr, ok := r.Params["ties_thresholds"].([]float64); ok {
			fmt.Fprintf(log, "  %s: trimmed |τ_t| below %.4g, %.4g, %.4g (global top-%.0f%% by magnitude, per task)\n", r.Name, thr[0], thr[1], thr[2], 100*r.Params["density"].([]float64)[0])
		}
		if l, ok := r.Params["lines"].(map[string]any); ok {
			fmt.Fprintf(log, "  %s: LiNeS α = %.4f (computed), β = %v: blocks scaled %.3f → %.3f\n", r.Name, l["alpha"], l["beta"], l["alpha"], l["alpha"].(float64)+l["beta"].(float64))
		}
		if r.Params["method"] == string(merge.ModelStock) {
			// Model Stock computes its ratio per tensor; the whole vectors'
			// mean pairwise cosine gives its typical value.
			var c float64
			n := len(cosine)
			for i := range n {
				for j := i + 1; j < n; j++ {
					c += cosine[i][j] / float64(n*(n-1)/2)
				}
			}
			fmt.Fprintf(log, "  %s: mean pairwise cosine c = %.3f, so θ = θ_base + t·mean_t(τ_t) with t = Nc/(1+(N−1)c) ≈ %.3f (per tensor)\n",
				r.Name, c, float64(n)*c/(1+float64(n-1)*c))
		}
	}
}
