package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
)

// LlamaDataEnv names the environment variable giving the folder that holds
// stories260K.bin and tok512.bin (as the tests of models/llama read it).
const LlamaDataEnv = "EDITKIT_LLM_DATA"

// LlamaScriptEnv names the environment variable giving the path of
// tools/torchref/bench_llama.py.
const LlamaScriptEnv = "EDITKIT_TORCHREF_BENCH_LLAMA"

// Stories260K file names: llama2.c's TinyStories model and its tokenizer.
const (
	Stories260KBin = "stories260K.bin"
	Tok512Bin      = "tok512.bin"
)

// Stories260KConfig is the shape of llama2.c's stories260K (dim 64, hidden
// 172, 5 layers, 8 heads over 4 key/value heads, vocabulary 512, 512
// positions, tied embeddings): the random model used when the file is
// absent.
func Stories260KConfig() llama.Config {
	c, err := llama.ParseConfig([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,
"num_attention_heads":8,"num_key_value_heads":4,"head_dim":8,"vocab_size":512,"max_position_embeddings":512,
"rms_norm_eps":1e-5,"rope_theta":10000,"hidden_act":"silu","tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}`))
	if err != nil {
		panic(err)
	}
	return c
}

// LlamaOptions configure RunLlama.
type LlamaOptions struct {
	// Data is the folder with stories260K.bin and tok512.bin; when they are
	// absent (or Random is set) a random model of the same shape is used.
	Data   string
	Random bool
	// Forward: Iters timed full forward passes over Batch random sequences
	// of Seq tokens, after Warmup untimed ones (the first compiles).
	Batch, Seq    int
	Iters, Warmup int
	// GenSteps is the number of positions of the greedy generation from
	// BOS (BOS included, as run.c's -n); 0 skips it.
	GenSteps int
	// Torch runs the PyTorch reference (Script: bench_llama.py).
	Torch *TorchOptions
	// Log receives progress lines.
	Log io.Writer
}

// DefaultLlamaOptions: a forward pass over 8 × 256 tokens (1 warm-up, 5
// timed) and 200 generated positions.
func DefaultLlamaOptions() LlamaOptions {
	return LlamaOptions{Batch: 8, Seq: 256, Iters: 5, Warmup: 1, GenSteps: 200}
}

// LlamaModelInfo describes the benchmarked model.
type LlamaModelInfo struct {
	Source       string `json:"source"` // the converted file, or "random"
	Hidden       int    `json:"hidden_size"`
	Intermediate int    `json:"intermediate_size"`
	Layers       int    `json:"layers"`
	Heads        int    `json:"heads"`
	KVHeads      int    `json:"kv_heads"`
	Vocab        int    `json:"vocab_size"`
	MaxPositions int    `json:"max_positions"`
	Parameters   int64  `json:"parameters"`
}

func (i LlamaModelInfo) String() string {
	return fmt.Sprintf("dim %d, hidden %d, %d layers, %d heads / %d kv heads, vocab %d, %d parameters",
		i.Hidden, i.Intermediate, i.Layers, i.Heads, i.KVHeads, i.Vocab, i.Parameters)
}

// LlamaForward is one framework's forward-pass timings.
type LlamaForward struct {
	FirstSeconds    float64   `json:"first_seconds"` // the first warm-up call (compilation + run)
	Seconds         []float64 `json:"seconds"`       // each timed call
	MedianSeconds   float64   `json:"median_seconds"`
	TokensPerSecond float64   `json:"tokens_per_second"`
	GFLOPs          float64   `json:"gflops"`
}

func (f *LlamaForward) finish(tokens int, flops float64) {
	if len(f.Seconds) == 0 {
		return
	}
	f.MedianSeconds = median(f.Seconds)
	if f.MedianSeconds > 0 {
		f.TokensPerSecond = float64(tokens) / f.MedianSeconds
		f.GFLOPs = flops / f.MedianSeconds / 1e9
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

// LlamaGenerate is one framework's greedy generation from BOS.
type LlamaGenerate struct {
	Steps     int `json:"steps"`     // positions, BOS included
	Generated int `json:"generated"` // sampled tokens
	// TokensPerSecond is the rate of the one-token steps after the first,
	// as llama.GenerateStats (and run.c) count it.
	TokensPerSecond float64 `json:"tokens_per_second"`
	// TotalSeconds is the whole generation, first steps (compilation)
	// included.
	TotalSeconds float64 `json:"total_seconds"`
	Tokens       []int   `json:"tokens,omitempty"`
	// Cache says how the loop runs ("kv cache").
	Cache string `json:"cache,omitempty"`
}

// LlamaSide is one framework's results.
type LlamaSide struct {
	Name     string            `json:"name"`
	Version  string            `json:"version,omitempty"`
	Backend  string            `json:"backend"`
	Threads  int               `json:"threads,omitempty"`
	Forward  *LlamaForward     `json:"forward,omitempty"`
	Generate *LlamaGenerate    `json:"generate,omitempty"`
	Notes    map[string]string `json:"notes,omitempty"`
}

// LlamaReport is the outcome of RunLlama.
type LlamaReport struct {
	Model   LlamaModelInfo `json:"model"`
	Batch   int            `json:"batch"`
	Seq     int            `json:"seq"`
	CPUs    int            `json:"cpus"`
	LoadAvg [2]float64     `json:"load_average"`
	Editkit LlamaSide      `json:"editkit"`
	Torch   *LlamaSide     `json:"torch,omitempty"`
	// TorchMissing says why there is no PyTorch side.
	TorchMissing string `json:"torch_missing,omitempty"`
	// SameTokens is the number of leading generated tokens the two sides
	// agree on (-1 without both generations).
	SameTokens int `json:"same_tokens"`
}

// Ratio is editkit's tokens/s over PyTorch's for "forward" or "generate",
// 0 when either is missing.
func (r *LlamaReport) Ratio(phase string) float64 {
	if r.Torch == nil {
		return 0
	}
	var a, b float64
	switch phase {
	case "forward":
		if r.Editkit.Forward == nil || r.Torch.Forward == nil {
			return 0
		}
		a, b = r.Editkit.Forward.TokensPerSecond, r.Torch.Forward.TokensPerSecond
	case "generate":
		if r.Editkit.Generate == nil || r.Torch.Generate == nil {
			return 0
		}
		a, b = r.Editkit.Generate.TokensPerSecond, r.Torch.Generate.TokensPerSecond
	}
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// LlamaForwardFLOPs is a forward pass's floating-point operations over
// batch × seq tokens, a multiply-add counted as 2, matrix products only:
// the projections, the MLP, the output layer and the attention scores and
// mixing over the full seq × seq square (as dense implementations compute
// it before masking).
func LlamaForwardFLOPs(c llama.Config, batch, seq int) float64 {
	d, f := float64(c.HiddenSize), float64(c.IntermediateSize)
	q := float64(c.NumAttentionHeads * c.HeadDim)
	kv := float64(c.NumKeyValueHeads * c.HeadDim)
	perToken := float64(c.NumHiddenLayers)*(2*d*(2*q+2*kv)+2*3*d*f+2*2*float64(seq)*q) + 2*d*float64(c.VocabSize)
	return float64(batch*seq) * perToken
}

// DefaultLlamaData finds the stories260K folder: $EDITKIT_LLM_DATA, else
// shared/data/llm in the working directory or a folder above it (the
// shared folder beside the repository). "" when none is found.
func DefaultLlamaData() string {
	if d := os.Getenv(LlamaDataEnv); d != "" {
		return d
	}
	return findAbove(filepath.Join("shared", "data", "llm", Stories260KBin), false)
}

// findAbove looks for rel in the working directory and its parents (and,
// with exe, the executable's folder and its parents), returning the folder
// holding rel's last element, or rel's path itself when file is set.
func findAbove(rel string, exe bool) string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe {
		if p, err := os.Executable(); err == nil {
			starts = append(starts, filepath.Dir(p))
		}
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				if exe {
					return p
				}
				return filepath.Dir(p)
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return ""
}

// FindLlamaTorchScript finds tools/torchref/bench_llama.py:
// $EDITKIT_TORCHREF_BENCH_LLAMA, else above the working directory or the
// executable.
func FindLlamaTorchScript() (string, error) {
	if p := os.Getenv(LlamaScriptEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", LlamaScriptEnv, err)
		}
		return p, nil
	}
	rel := filepath.Join("tools", "torchref", "bench_llama.py")
	if p := findAbove(rel, true); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("the PyTorch reference script %s was not found above the working directory or the executable (set $%s)", rel, LlamaScriptEnv)
}

// RunLlama converts stories260K (or makes a random model of its shape)
// into a temporary Hugging Face folder, times a batched forward pass and a
// greedy generation in editkit, then the same in PyTorch from the same
// folder (when o.Torch is set), one after the other.
func RunLlama(o LlamaOptions) (*LlamaReport, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Batch <= 0 || o.Seq <= 0 || o.Iters < 0 || o.Warmup < 1 || o.GenSteps < 0 {
		return nil, fmt.Errorf("batch %d, seq %d, iterations %d, warm-up %d, generation steps %d: want positive batch and seq, ≥ 0 timed calls, ≥ 1 warm-up, ≥ 0 steps",
			o.Batch, o.Seq, o.Iters, o.Warmup, o.GenSteps)
	}
	tmp, err := os.MkdirTemp("", "editkit-bench-llama-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "model")
	m, source, err := benchLlamaModel(o, dir)
	if err != nil {
		return nil, err
	}
	c := m.Config
	if o.Seq > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("seq %d is longer than the model's %d positions", o.Seq, c.MaxPositionEmbeddings)
	}
	if o.GenSteps > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("generation steps %d: the model has %d positions", o.GenSteps, c.MaxPositionEmbeddings)
	}
	var params int64
	for _, s := range c.Specs() {
		n := int64(1)
		for _, d := range s.Shape {
			n *= int64(d)
		}
		params += n
	}
	b := models.Backend()
	r := &LlamaReport{
		Model: LlamaModelInfo{Source: source, Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
			Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, Vocab: c.VocabSize, MaxPositions: c.MaxPositionEmbeddings, Parameters: params},
		Batch: o.Batch, Seq: o.Seq, CPUs: runtime.NumCPU(), SameTokens: -1,
		Editkit: LlamaSide{Name: "editkit (GoMLX)", Backend: b.Name() + ": " + b.Description(), Threads: runtime.GOMAXPROCS(0)},
	}
	r.LoadAvg[0] = loadAverage()
	defer func() { r.LoadAvg[1] = loadAverage() }()
	bos := max(c.BOSTokenID, 0)
	ids := randomIDs(o.Batch, o.Seq, c.VocabSize, 1) // the same batch on both sides
	if o.Iters > 0 {
		fmt.Fprintf(o.Log, "editkit: forward over %d × %d random tokens: %d warm-up + %d timed calls\n", o.Batch, o.Seq, o.Warmup, o.Iters)
		if r.Editkit.Forward, err = llamaGoForward(m, o, ids); err != nil {
			return nil, fmt.Errorf("editkit forward: %w", err)
		}
	}
	if o.GenSteps > 0 {
		fmt.Fprintf(o.Log, "editkit: greedy generation of %d positions from BOS\n", o.GenSteps)
		t := time.Now()
		out, st, err := m.Generate([]int{bos}, llama.GenerateOptions{Steps: o.GenSteps, Stop: func(int) bool { return false }})
		if err != nil {
			return nil, fmt.Errorf("editkit generation: %w", err)
		}
		r.Editkit.Generate = &LlamaGenerate{Steps: o.GenSteps, Generated: st.Generated, TokensPerSecond: st.TokensPerSecond,
			TotalSeconds: time.Since(t).Seconds(), Tokens: out, Cache: "kv cache"}
	}
	if o.Torch != nil {
		fmt.Fprintf(o.Log, "editkit: the same in PyTorch (%s)\n", o.Torch.Python)
		r.Torch, err = runLlamaTorch(*o.Torch, o, dir, bos, ids)
		if err != nil {
			r.TorchMissing = err.Error()
			r.Torch = nil
		}
	} else {
		r.TorchMissing = "not run"
	}
	if r.Torch != nil && r.Torch.Forward != nil {
		r.Torch.Forward.finish(o.Batch*o.Seq, LlamaForwardFLOPs(c, o.Batch, o.Seq))
	}
	if r.Torch != nil && r.Torch.Generate != nil && r.Editkit.Generate != nil {
		a, b := r.Editkit.Generate.Tokens, r.Torch.Generate.Tokens
		n := 0
		for n < len(a) && n < len(b) && a[n] == b[n] {
			n++
		}
		r.SameTokens = n
	}
	return r, nil
}

// benchLlamaModel writes the benchmarked model into dir (a Hugging Face
// folder both sides load) and loads it.
func benchLlamaModel(o LlamaOptions, dir string) (*llama.Model, string, error) {
	bin, tok := filepath.Join(o.Data, Stories260KBin), filepath.Join(o.Data, Tok512Bin)
	_, e1 := os.Stat(bin)
	_, e2 := os.Stat(tok)
	if !o.Random && o.Data != "" && e1 == nil && e2 == nil {
		fmt.Fprintf(o.Log, "editkit: converting %s\n", bin)
		if _, err := llama.ConvertLlama2C(bin, dir, llama.Llama2CConvertOptions{Tokenizer: tok}); err != nil {
			return nil, "", err
		}
		m, err := llama.Load(dir)
		return m, bin, err
	}
	why := "--random"
	if !o.Random {
		why = fmt.Sprintf("%s and %s not found", Stories260KBin, Tok512Bin)
		if o.Data != "" {
			why = fmt.Sprintf("%s or %s absent from %s", Stories260KBin, Tok512Bin, o.Data)
		}
	}
	fmt.Fprintf(o.Log, "editkit: a random model of stories260K's shape (%s)\n", why)
	m, err := llama.NewRandom(Stories260KConfig(), 1)
	if err != nil {
		return nil, "", err
	}
	if err := m.Save(dir, checkpoint.WriteOptions{}); err != nil {
		return nil, "", err
	}
	return m, "random (" + why + ")", nil
}

// randomIDs returns batch rows of seq random token ids below vocab.
func randomIDs(batch, seq, vocab int, seed uint64) [][]int {
	r := rand.New(rand.NewPCG(seed, 5))
	rows := make([][]int, batch)
	for i := range rows {
		rows[i] = make([]int, seq)
		for j := range rows[i] {
			rows[i][j] = r.IntN(vocab)
		}
	}
	return rows
}

func llamaGoForward(m *llama.Model, o LlamaOptions, rows [][]int) (*LlamaForward, error) {
	ids, err := llama.IDs(rows...)
	if err != nil {
		return nil, err
	}
	call := func() error {
		logits, err := m.Logits(ids)
		if err != nil {
			return err
		}
		_ = tensors.MustCopyFlatData[float32](logits) // on the host: the work is done
		logits.FinalizeAll()
		return nil
	}
	f := &LlamaForward{}
	for i := range o.Warmup + o.Iters {
		t := time.Now()
		if err := call(); err != nil {
			return nil, err
		}
		dt := time.Since(t).Seconds()
		if i == 0 {
			f.FirstSeconds = dt
		}
		if i >= o.Warmup {
			f.Seconds = append(f.Seconds, dt)
		}
	}
	f.finish(o.Batch*o.Seq, LlamaForwardFLOPs(m.Config, o.Batch, o.Seq))
	return f, nil
}

// llamaTorchOutput is what bench_llama.py prints.
type llamaTorchOutput struct {
	Error    string            `json:"error"`
	Torch    string            `json:"torch"`
	Device   string            `json:"device"`
	Threads  int               `json:"threads"`
	Notes    map[string]string `json:"notes"`
	Forward  *LlamaForward     `json:"forward"`
	Generate *LlamaGenerate    `json:"generate"`
}

// llamaTorchArgs are bench_llama.py's arguments.
func llamaTorchArgs(t TorchOptions, o LlamaOptions, dir string, bos int) []string {
	threads := t.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	device := t.Device
	if device == "" {
		device = "cpu"
	}
	return []string{t.Script, "--model", dir, "--device", device, "--threads", strconv.Itoa(threads),
		"--batch", strconv.Itoa(o.Batch), "--seq", strconv.Itoa(o.Seq), "--warmup", strconv.Itoa(o.Warmup),
		"--iters", strconv.Itoa(o.Iters), "--gen-steps", strconv.Itoa(o.GenSteps), "--bos", strconv.Itoa(bos)}
}

// runLlamaTorch runs bench_llama.py on the model folder; the error says
// why there are no results.
func runLlamaTorch(t TorchOptions, o LlamaOptions, dir string, bos int, ids [][]int) (*LlamaSide, error) {
	// The forward pass's ids go over stdin, so both sides run one batch.
	js, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	var out llamaTorchOutput
	args := func() []string { return llamaTorchArgs(t, o, dir, bos) }
	if err := runReference(&t, FindLlamaTorchScript, args, js, &out, func() string { return out.Error }); err != nil {
		return nil, err
	}
	return &LlamaSide{Name: "PyTorch", Version: out.Torch, Backend: out.Device, Threads: out.Threads,
		Forward: out.Forward, Generate: out.Generate, Notes: out.Notes}, nil
}
