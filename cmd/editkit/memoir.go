package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/memoir"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
)

// memoirCmd groups the knowledge-editing commands.
func (a *app) memoirCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "memoir",
		Short: "Lifelong knowledge editing of LLaMA-family models: MEMOIR, GRACE, FT-L",
		Long: `memoir edits the knowledge of a LLaMA-family causal language model one fact
after another (lifelong, sequential editing) and evaluates the edits as
EasyEdit does (teacher-forced token accuracy): reliability on the edit prompts,
generalization on their rephrasings, locality on unrelated prompts.

Methods: MEMOIR (a residual memory at one layer's MLP down-projection, written
and read through sparse prompt-dependent masks), GRACE (a key-value codebook at
the same site) and FT-L (fine-tuning that layer's down_proj). An edit file is
EasyEdit's ZsRE or CounterFact-style JSON (or JSON Lines). A memory is one
safetensors file next to the model; 'editkit generate --memory' applies it.`,
	}
	c.AddCommand(a.memoirEditCmd(), a.memoirEvalCmd(), a.memoirCompareCmd())
	return c
}

// memoirFlags are the flags shared by the memoir commands.
type memoirFlags struct {
	model, tok, edits string
	n, layer          int
}

func (f *memoirFlags) register(c *cobra.Command, withN bool) {
	fs := c.Flags()
	fs.StringVar(&f.model, "model", "", "the model: a Hugging Face LLaMA-family folder (required)")
	fs.StringVar(&f.tok, "tokenizer", "", "the tokenizer: a folder or file (default: the model folder's)")
	fs.StringVar(&f.edits, "edits", "", "the edit requests: EasyEdit ZsRE or CounterFact-style JSON / JSON Lines (required)")
	if withN {
		fs.IntVarP(&f.n, "n", "n", 0, "apply the first N edits of the file (default: all)")
		fs.IntVar(&f.layer, "layer", -1, "decoder layer to edit (default: round(27/32 · layers), MEMOIR's relative depth)")
	}
	markPaths(fs, pathInput, "model", "tokenizer", "edits")
}

// load checks the flags and loads the model and the edits.
func (f *memoirFlags) load() (*memoir.Base, []memoir.EditRequest, error) {
	if f.model == "" {
		return nil, nil, errors.New("no model given: pass --model DIR (a Hugging Face LLaMA-family folder, e.g. one written by 'editkit convert llama2c')")
	}
	if f.edits == "" {
		return nil, nil, errors.New("no edits given: pass --edits FILE.json (EasyEdit ZsRE or CounterFact-style records)")
	}
	edits, _, err := memoir.LoadEdits(f.edits)
	if err != nil {
		return nil, nil, err
	}
	if f.n < 0 || f.n > len(edits) {
		return nil, nil, fmt.Errorf("-n %d: the file holds %d edits", f.n, len(edits))
	}
	if f.n > 0 {
		edits = edits[:f.n]
	}
	base, err := memoir.LoadBase(f.model, f.tok)
	if err != nil {
		return nil, nil, err
	}
	return base, edits, nil
}

// logf prints a progress line on stderr unless --quiet.
func (a *app) memoirLogf(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: "+format+"\n", args...)
	}
}

// editProgress prints one line per edit (at most one a second after the
// first ten) and evaluation progress every 25%.
func (a *app) editProgress(prefix string) memoir.Progress {
	if a.quiet {
		return nil
	}
	start, last := time.Now(), time.Time{}
	return func(stage string, done, total int) {
		switch stage {
		case "edit":
			if done <= 10 || done == total || time.Since(last) >= time.Second {
				last = time.Now()
				el := time.Since(start).Seconds()
				fmt.Fprintf(a.stderr, "editkit: %s: edit %d/%d (%.1fs elapsed, %.2f s/edit)\n", prefix, done, total, el, el/float64(done))
			}
		case "eval":
			if done == total || done*4/total != (done-1)*4/total {
				fmt.Fprintf(a.stderr, "editkit: %s: evaluated %d/%d edits\n", prefix, done, total)
			}
		}
	}
}

// memoirEditResult is the --json result of memoir edit.
type memoirEditResult struct {
	Command        string             `json:"command"`
	Output         string             `json:"output"`
	Method         memoir.Method      `json:"method"`
	Layer          int                `json:"layer"`
	Edits          int                `json:"edits"`
	Seconds        float64            `json:"seconds"`
	SecondsPerEdit float64            `json:"seconds_per_edit"`
	Bytes          int64              `json:"bytes"`
	Stats          []memoir.EditStats `json:"per_edit"`
	Backend        string             `json:"backend"`
}

func (a *app) memoirEditCmd() *cobra.Command {
	var (
		f         memoirFlags
		method    string
		out       string
		force     bool
		topK      int
		threshold = thresholdFlag{tau: 0.4}
	)
	c := &cobra.Command{
		Use:   "edit --model DIR --edits FILE.json -o MEM.safetensors",
		Short: "Apply edits one after another and save the edit memory",
		Long: `edit applies the first -n edits of an edit file to the model one after another
(MEMOIR by default; --method grace or ft-l for the baselines) and writes the
resulting memory as one safetensors file: MEMOIR's residual memory W_m, its
permutation, background mean and one bit-packed mask per edit; GRACE's
codebook; FT-L's down_proj delta. Settings, the edit file and a digest of the
edits go into its metadata. Progress goes to stderr.`,
		Args: exactArgs(0, "no arguments (give the model with --model and the edits with --edits)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			m, err := memoir.ParseMethod(method)
			if err != nil {
				return fmt.Errorf("--method: %w", err)
			}
			if out == "" {
				return errors.New("no output given: pass -o MEM.safetensors")
			}
			if !strings.HasSuffix(out, ".safetensors") {
				return fmt.Errorf("-o %s: a memory is one file; give a path ending in .safetensors", out)
			}
			if m != memoir.MethodMEMOIR && (cmd.Flags().Changed("top-k") || cmd.Flags().Changed("threshold")) {
				return fmt.Errorf("--top-k and --threshold are MEMOIR settings; --method is %s", m)
			}
			base, edits, err := f.load()
			if err != nil {
				return err
			}
			var ed memoir.Editor
			if m == memoir.MethodMEMOIR {
				cfg := memoir.DefaultConfig()
				cfg.Layer, cfg.TopK = f.layer, topK
				threshold.apply(&cfg)
				a.memoirLogf("memoir edit: computing the background mean and the augmentation prefixes")
				ed, err = memoir.NewMEMOIR(base, cfg)
			} else {
				ed, err = memoir.New(m, base, f.layer)
			}
			if err != nil {
				return err
			}
			a.memoirLogf("memoir edit: %s at layer %d, %d edits (%s)", m, ed.Layer(), len(edits), models.Backend().Description())
			prog := a.editProgress("memoir edit")
			stats, err := memoir.ApplyEdits(ed, edits, func(i int, _ memoir.EditStats) {
				if prog != nil {
					prog("edit", i+1, len(edits))
				}
			})
			if err != nil {
				return err
			}
			meta := map[string]string{
				"edits_file": filepath.Base(f.edits), "edits_digest": memoir.EditsDigest(edits),
				"edit_stats": memoirJSON(stats), "created_by": "editkit memoir edit",
			}
			if err := ed.Save(out, memoir.SaveOptions{Force: force, Metadata: meta, Inputs: []string{f.model, f.edits}}); err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			res := memoirEditResult{Command: "memoir edit", Output: out, Method: m, Layer: ed.Layer(), Edits: len(edits),
				Seconds: time.Since(start).Seconds(), Bytes: st.Size(), Stats: stats, Backend: models.Backend().Description()}
			for _, s := range stats {
				res.SecondsPerEdit += s.Seconds / float64(len(stats))
			}
			if a.json {
				return a.printJSON(res)
			}
			a.memoirLogf("memoir edit: wrote %s (%s, %d edits, %.2f s/edit, %.1fs)", out, humanBytes(res.Bytes), res.Edits, res.SecondsPerEdit, res.Seconds)
			return nil
		},
	}
	f.register(c, true)
	fs := c.Flags()
	fs.StringVar(&method, "method", "memoir", "editing method: memoir, grace or ft-l")
	fs.StringVarP(&out, "output", "o", "", "the memory file to write, ending in .safetensors (required)")
	fs.BoolVar(&force, "force", false, "replace the output if it exists")
	fs.IntVar(&topK, "top-k", 0, "MEMOIR: features each mask keeps (default: 4096/14336 of the MLP width, the reference's ratio)")
	fs.Var(&threshold, "threshold", thresholdUsage)
	markPaths(fs, pathOutput, "output")
	return c
}

func memoirJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

func (a *app) memoirEvalCmd() *cobra.Command {
	var (
		f       memoirFlags
		mem     string
		perEdit bool
	)
	c := &cobra.Command{
		Use:   "eval --model DIR --edits FILE.json --memory MEM.safetensors",
		Short: "Evaluate an edit memory: reliability, generalization, locality",
		Long: `eval loads a memory written by 'memoir edit' and evaluates the edits it holds
(the first T of the edit file, T read from the memory) as EasyEdit's sequential
protocol does after all T edits: teacher-forced token accuracy of the target
after each prompt (reliability) and after its rephrasings (generalization), and
the agreement of the edited and unedited models' predictions on the locality
prompts and answers (locality). It prints a markdown table (--json: the full
result, per edit included) and, with --per-edit, one line per edit.`,
		Args: exactArgs(0, "no arguments (give the model, the edits and the memory with flags)"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if mem == "" {
				return errors.New("no memory given: pass --memory MEM.safetensors (written by 'editkit memoir edit')")
			}
			info, err := memoir.ReadMemoryInfo(mem)
			if err != nil {
				return err
			}
			base, edits, err := f.load()
			if err != nil {
				return err
			}
			if info.Edits > len(edits) {
				return fmt.Errorf("%s holds %d edits, but %s has only %d", mem, info.Edits, f.edits, len(edits))
			}
			edits = edits[:info.Edits]
			if d := info.Metadata["edits_digest"]; d != "" && d != memoir.EditsDigest(edits) {
				a.memoirLogf("memoir eval: warning: the first %d edits of %s are not the edits %s was made from (%s)", info.Edits, f.edits, mem, info.Metadata["edits_file"])
			}
			ed, _, err := memoir.Load(mem, base)
			if err != nil {
				return err
			}
			a.memoirLogf("memoir eval: %s memory at layer %d, %d edits", info.Method, info.Layer, info.Edits)
			res, err := memoir.Evaluate(ed, base, edits, a.editProgress("memoir eval"))
			if err != nil {
				return err
			}
			var stats []memoir.EditStats
			if s := info.Metadata["edit_stats"]; s != "" && json.Unmarshal([]byte(s), &stats) == nil && len(stats) == info.Edits {
				res.AttachStats(stats)
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprint(a.stdout, memoir.Markdown([]*memoir.Result{res}))
			if perEdit {
				printMemoirPerEdit(a, res)
			}
			return nil
		},
	}
	f.register(c, false)
	c.Flags().StringVar(&mem, "memory", "", "the memory file written by 'editkit memoir edit' (required)")
	c.Flags().BoolVar(&perEdit, "per-edit", false, "also print one line per edit")
	markPaths(c.Flags(), pathInput, "memory")
	return c
}

func printMemoirPerEdit(a *app, r *memoir.Result) {
	fmt.Fprintln(a.stdout)
	for _, e := range r.PerEdit {
		g, l := "–", "–"
		if e.Generalization != nil {
			g = fmt.Sprintf("%.2f", *e.Generalization)
		}
		if e.Locality != nil {
			l = fmt.Sprintf("%.2f", *e.Locality)
		}
		fmt.Fprintf(a.stdout, "%3d  rel %.2f  gen %s  loc %s  used %v  %q → %q\n", e.Index, e.Reliability, g, l, e.Active, e.Prompt, e.Target)
	}
}

// compareResult is the --json result of memoir compare.
type compareResult struct {
	Command string           `json:"command"`
	Model   string           `json:"model"`
	Edits   string           `json:"edits"`
	Backend string           `json:"backend"`
	Results []*memoir.Result `json:"results"`
}

func (a *app) memoirCompareCmd() *cobra.Command {
	var (
		f        memoirFlags
		counts   []int
		methods  []string
		markdown string
		perEdit  bool
		force    bool
	)
	c := &cobra.Command{
		Use:   "compare --model DIR --edits FILE.json [--counts 1,10,100] [--methods memoir,grace,ft-l]",
		Short: "Run the sequential protocol for several methods and edit counts; print the table",
		Long: `compare runs, for each method, the first max(T) edits of the file one after
another and evaluates the first T after T edits, for each T of --counts (edits
are applied in order and deterministically, so each T's row is what a separate
run of T edits gives). It prints a markdown table (--json: all results, per
edit included); --markdown also writes the table to a file.`,
		Args: exactArgs(0, "no arguments (give the model and the edits with flags)"),
		RunE: func(_ *cobra.Command, _ []string) error {
			var ms []memoir.Method
			for _, s := range methods {
				m, err := memoir.ParseMethod(s)
				if err != nil {
					return fmt.Errorf("--methods: %w", err)
				}
				ms = append(ms, m)
			}
			base, edits, err := f.load()
			if err != nil {
				return err
			}
			for _, T := range counts {
				if T < 1 || T > len(edits) {
					return fmt.Errorf("--counts %d: it must be in 1..%d (the edits in %s)", T, len(edits), f.edits)
				}
			}
			res := compareResult{Command: "memoir compare", Model: f.model, Edits: f.edits, Backend: models.Backend().Description()}
			for _, m := range ms {
				ed, err := memoir.New(m, base, f.layer)
				if err != nil {
					return err
				}
				a.memoirLogf("memoir compare: %s at layer %d, edit counts %v", m, ed.Layer(), counts)
				rs, err := memoir.RunSequential(ed, base, edits, counts, a.editProgress("memoir compare: "+string(m)))
				if err != nil {
					return err
				}
				res.Results = append(res.Results, rs...)
				if !a.json {
					fmt.Fprint(a.stderr, memoir.Markdown(rs))
				}
			}
			table := memoir.Markdown(res.Results)
			if markdown != "" {
				if err := a.writeFile(markdown, []byte(table)); err != nil {
					return err
				}
			}
			if !perEdit {
				for _, r := range res.Results {
					r.PerEdit = nil
				}
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprint(a.stdout, table)
			return nil
		},
	}
	f.register(c, true)
	fs := c.Flags()
	fs.IntSliceVar(&counts, "counts", []int{1, 10, 100}, "numbers of sequential edits T to evaluate after")
	fs.StringSliceVar(&methods, "methods", []string{"memoir", "grace", "ft-l"}, "methods to compare")
	fs.StringVar(&markdown, "markdown", "", "also write the markdown table to this file")
	fs.BoolVar(&perEdit, "per-edit", false, "with --json, include each edit's scores")
	fs.BoolVar(&force, "force", false, "replace the --markdown file if it exists")
	markPaths(fs, pathOutput, "markdown")
	return c
}

// benchMemoirCmd times MEMOIR's edits and inference and measures the
// memory's size (registered under 'editkit bench').
func (a *app) benchMemoirCmd() *cobra.Command {
	var (
		f       memoirFlags
		queries int
	)
	c := &cobra.Command{
		Use:   "memoir --model DIR --edits FILE.json [-n 10]",
		Short: "Time MEMOIR edits and routed inference; measure the memory per edit",
		Long: `Applies the first -n edits of the file with MEMOIR's default settings and
reports the seconds per edit (mean, median, fastest, after the first, whose
graphs compile), training iterations per edit, the seconds per routed query
(mask computation and the edited forward pass), and the memory's size: W_m,
fixed whatever the number of edits, and the bit-packed mask each edit adds,
with the saved file's size.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if f.n == 0 {
				f.n = 10
			}
			base, edits, err := f.load()
			if err != nil {
				return err
			}
			cfg := memoir.DefaultConfig()
			cfg.Layer = f.layer
			t0 := time.Now()
			m, err := memoir.NewMEMOIR(base, cfg)
			if err != nil {
				return err
			}
			setup := time.Since(t0).Seconds()
			prog := a.editProgress("bench memoir")
			stats, err := memoir.ApplyEdits(m, edits, func(i int, _ memoir.EditStats) {
				if prog != nil {
					prog("edit", i+1, len(edits))
				}
			})
			if err != nil {
				return err
			}
			r := benchMemoirReport{Backend: models.Backend().Description(), Edits: len(edits), Layer: m.Layer(), TopK: m.Config().TopK,
				Intermediate: base.Model.Config.IntermediateSize, Hidden: base.Model.Config.HiddenSize, SetupSeconds: setup}
			var secs []float64
			for _, s := range stats {
				secs = append(secs, s.Seconds)
				r.ItersPerEdit += float64(s.Iterations) / float64(len(stats))
			}
			r.FirstEditSeconds = secs[0]
			rest := secs
			if len(secs) > 1 {
				rest = secs[1:]
			}
			r.SecondsPerEdit, r.MedianSeconds, r.FastestSeconds = memoirMean(rest), memoirMedian(rest), slices.Min(rest)
			// Routed queries: the edit prompts themselves.
			qs := min(queries, len(edits))
			t1 := time.Now()
			for _, e := range edits[:qs] {
				ids, pl, err := base.Encode(e.Prompt, e.Target)
				if err != nil {
					return err
				}
				if _, _, err := m.Predict(ids, pl); err != nil {
					return err
				}
			}
			if qs > 0 {
				r.SecondsPerQuery = time.Since(t1).Seconds() / float64(qs)
			}
			r.MemoryBytes = int64(4 * r.Hidden * r.Intermediate)
			r.MaskBytesPerEdit = memoir.MaskBytes(r.Intermediate)
			dir, remove, err := checkpoint.TempDir("", "editkit-bench-memoir-")
			if err != nil {
				return err
			}
			defer remove()
			p := filepath.Join(dir, "m.safetensors")
			if err := m.Save(p, memoir.SaveOptions{}); err != nil {
				return err
			}
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			r.FileBytes = st.Size()
			if a.json {
				return a.printJSON(r)
			}
			w := a.stdout
			fmt.Fprintf(w, "MEMOIR on %s: layer %d, k = %d of %d features, %d edits (%s)\n", f.model, r.Layer, r.TopK, r.Intermediate, r.Edits, r.Backend)
			fmt.Fprintf(w, "setup (background mean, augmentation prefixes): %.2f s\n", r.SetupSeconds)
			fmt.Fprintf(w, "seconds per edit: mean %.3f, median %.3f, fastest %.3f (first edit, compiling: %.3f); %.1f iterations per edit\n",
				r.SecondsPerEdit, r.MedianSeconds, r.FastestSeconds, r.FirstEditSeconds, r.ItersPerEdit)
			fmt.Fprintf(w, "seconds per routed query: %.4f\n", r.SecondsPerQuery)
			fmt.Fprintf(w, "memory: W_m %s (fixed), %d B per edit (bit-packed mask); file after %d edits: %s\n",
				humanBytes(r.MemoryBytes), r.MaskBytesPerEdit, r.Edits, humanBytes(r.FileBytes))
			return nil
		},
	}
	f.register(c, true)
	c.Flags().IntVar(&queries, "queries", 10, "routed queries to time")
	return c
}

// benchMemoirReport is the result of bench memoir.
type benchMemoirReport struct {
	Backend          string  `json:"backend"`
	Edits            int     `json:"edits"`
	Layer            int     `json:"layer"`
	TopK             int     `json:"top_k"`
	Hidden           int     `json:"hidden_size"`
	Intermediate     int     `json:"intermediate_size"`
	SetupSeconds     float64 `json:"setup_seconds"`
	FirstEditSeconds float64 `json:"first_edit_seconds"`
	SecondsPerEdit   float64 `json:"seconds_per_edit"`
	MedianSeconds    float64 `json:"median_seconds_per_edit"`
	FastestSeconds   float64 `json:"fastest_seconds_per_edit"`
	ItersPerEdit     float64 `json:"iterations_per_edit"`
	SecondsPerQuery  float64 `json:"seconds_per_query"`
	MemoryBytes      int64   `json:"memory_bytes"`
	MaskBytesPerEdit int     `json:"mask_bytes_per_edit"`
	FileBytes        int64   `json:"file_bytes"`
}

func memoirMean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func memoirMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// applyMemory returns the model generate runs under the memory file path
// (written by 'memoir edit') for the prompt ids, and says on stderr what it
// chose (MEMOIR's routing of the prompt).
func (a *app) applyMemory(m *llama.Model, tok tokenizers.Tokenizer, path string, ids []int) (*llama.Model, error) {
	base, err := memoir.NewBase(m, tok)
	if err != nil {
		return nil, err
	}
	ed, _, err := memoir.Load(path, base)
	if err != nil {
		return nil, err
	}
	em, desc, err := memoir.ModelForGeneration(ed, ids)
	if err != nil {
		return nil, err
	}
	if !a.json {
		a.memoirLogf("generate: %s", desc)
	}
	return em, nil
}
