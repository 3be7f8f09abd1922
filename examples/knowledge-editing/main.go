// Command knowledge-editing is editkit's testbed for lifelong knowledge
// editing: it generates a synthetic biography corpus (invented people with
// five attributes(), several sentence templates each, some held out), trains
// a byte-pair tokenizer and a small LLaMA-family model on it from scratch,
// measures how well the model recalls the facts in training and in held-out
// wordings, builds an EasyEdit-format edit set of counterfactual edits, and
// compares MEMOIR (at the reference's τ = 0.4 and at a τ calibrated from
// the chance overlap of masks), GRACE and FT-L after T = 1, 10, 100, ...
// sequential edits, with the overlap histograms MEMOIR's routing rests on.
//
//	go run ./examples/knowledge-editing [--quick] [--out DIR] [--redo] [--settings JSON]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/memoir"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
	"github.com/editkit/editkit/models/train"
)

// settings are the sizes of a run.
type settings struct {
	// The corpus: People invented people, Bios biographies each.
	People, Bios int
	// Values is how many values of each attribute are used (0: all).
	Values int
	Seed   uint64
	// Vocab is the tokenizer's size (special and byte tokens included).
	Vocab int
	// The model.
	Hidden, Intermediate, Layers, Heads int
	// Training: AdamW, cosine schedule with Warmup steps, clipping at 1.
	Batch, Epochs, Warmup int
	LR, WeightDecay       float64
	// RecallPeople is how many people the recall is measured on (every
	// attribute, every template).
	RecallPeople int
	// Editing: the layer whose down_proj every method edits, the number of
	// single-edit runs averaged for T = 1, the sequential edit counts T,
	// the people MEMOIR's background prompts are about (never edited) and
	// the locality prompts of each edit; Calibration held-out edits (never
	// evaluated) choose FT-L's learning rate.
	EditLayer, Singles int
	Counts             []int
	BackgroundPeople   int
	Locality           int
	Calibration        int
	// MEMOIRIterations replaces the reference's 30 training iterations
	// of a MEMOIR edit (0: keep 30).
	MEMOIRIterations int
}

func quickSettings() settings {
	return settings{People: 40, Bios: 40, Values: 8, Seed: 1, Vocab: 1024,
		Hidden: 32, Intermediate: 128, Layers: 2, Heads: 2,
		Batch: 8, Epochs: 2, Warmup: 20, LR: 1e-2, WeightDecay: 0.1, RecallPeople: 40,
		EditLayer: 0, Singles: 3, Counts: []int{6}, BackgroundPeople: 8, Locality: 2, Calibration: 5}
}

func fullSettings() settings {
	return settings{People: 200, Bios: 10, Seed: 1, Vocab: 2048,
		Hidden: 64, Intermediate: 768, Layers: 3, Heads: 4,
		Batch: 16, Epochs: 7, Warmup: 100, LR: 1e-2, WeightDecay: 0.01, RecallPeople: 300,
		EditLayer: 1, Singles: 50, Counts: []int{10, 100, 300}, BackgroundPeople: 100, Locality: 2, Calibration: 20}
}

type options struct {
	Quick    bool
	Out      string
	Redo     bool
	Settings string
	Log      io.Writer
}

// report is the run's result, written as results.json.
type report struct {
	Quick    bool     `json:"quick"`
	Settings settings `json:"settings"`
	Backend  string   `json:"backend"`
	// Corpus.
	Documents, Tokens int
	TrainLoss         float64
	TrainSeconds      float64
	// Recall on training and held-out templates, overall and per
	// attribute.
	RecallTrain, RecallHeldOut float64
	RecallByAttr               map[string][2]float64
	// Editing.
	EditSet  string             `json:"edit_set"`
	Edits    int                `json:"edits"`
	Variants []*variant         `json:"variants"`
	Overlaps []*overlapRecord   `json:"overlaps"`
	Costs    []*costRecord      `json:"costs"`
	Table    string             `json:"table"`
	Seconds  map[string]float64 `json:"seconds"`
}

func main() {
	// An interrupted run removes the model, memory or table it was writing;
	// a finished model stays, for a rerun to reuse.
	sig := checkpoint.ExitOnSignal(os.Stderr, "knowledge-editing")
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "tiny model and corpus (seconds; what the test runs)")
	flag.StringVar(&o.Out, "out", "knowledge-editing-out", "folder for everything the run writes")
	flag.BoolVar(&o.Redo, "redo", false, "retrain the model instead of reusing a finished one")
	flag.StringVar(&o.Settings, "settings", "", `JSON object overriding sizes and schedules, e.g. '{"People":1000,"Bios":60}' (names as in results.json)`)
	flag.Parse()
	o.Log = os.Stderr
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "knowledge-editing:", err)
		sig.Exit(1)
	}
	fmt.Printf("recall: training templates %.3f, held-out templates %.3f\n\n%s", r.RecallTrain, r.RecallHeldOut, r.Table)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func run(o options) (*report, error) {
	logf := pretraining.Logger(o.Log)
	st := fullSettings()
	if o.Quick {
		st = quickSettings()
	}
	if err := pretraining.Override(&st, o.Settings); err != nil {
		return nil, err
	}
	rep := &report{Quick: o.Quick, Settings: st, Backend: models.Backend().Description(), Seconds: map[string]float64{}, RecallByAttr: map[string][2]float64{}}
	stage := time.Now()
	lap := func(name string) { rep.Seconds[name] = time.Since(stage).Seconds(); stage = time.Now() }
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	// The model and memories in o.Out are reused only by a run with the
	// same settings.
	if err := pretraining.Stamp(o.Out, st, o.Redo); err != nil {
		return nil, err
	}

	// 1. The corpus and the tokenizer.
	c, err := newCorpus(corpusSettings{People: st.People, Bios: st.Bios, Values: st.Values, Seed: st.Seed})
	if err != nil {
		return nil, err
	}
	tok, err := tokenizers.TrainLlama2C(c.Docs, st.Vocab, c.editableValues()...)
	if err != nil {
		return nil, err
	}
	if err := checkValueTokens(c, tok); err != nil {
		return nil, err
	}
	seqs := make([][]int, len(c.Docs))
	longest := 0
	for i, d := range c.Docs {
		seqs[i] = tok.Encode(d, true, true)
		rep.Tokens += len(seqs[i])
		longest = max(longest, len(seqs[i]))
	}
	rep.Documents = len(seqs)
	logf("corpus: %d people, %d biographies, %d tokens (%.1f a biography, the longest %d; vocabulary %d)", len(c.People), len(seqs), rep.Tokens, float64(rep.Tokens)/float64(len(seqs)), longest, tok.VocabSize())
	lap("corpus")

	// 2. The model, trained from scratch (or reused).
	modelDir := filepath.Join(o.Out, "model")
	var m *llama.Model
	if exists(filepath.Join(modelDir, "config.json")) && !o.Redo {
		logf("reusing %s", modelDir)
		if m, err = llama.Load(modelDir); err != nil {
			return nil, err
		}
	} else {
		if m, err = llama.NewRandom(st.llamaConfig(tok.VocabSize()), st.Seed); err != nil {
			return nil, err
		}
		opt := train.Options{LearningRate: st.LR, WeightDecay: st.WeightDecay, Warmup: st.Warmup, ClipNorm: 1, BatchSize: st.Batch, Epochs: st.Epochs, Seed: st.Seed,
			Progress: func(p train.Progress) {
				if p.Step%max(1, p.Steps/40) == 0 || p.Step == p.Steps {
					logf("training step %d/%d loss %.3f token accuracy %.3f lr %.2g (%.2f steps/s, ETA %s)", p.Step, p.Steps, p.AvgLoss, p.Accuracy, p.LR, p.StepsPerSec, p.ETA.Round(time.Second))
				}
			}}
		res, err := train.CausalLM(m, seqs, opt)
		if err != nil {
			return nil, err
		}
		rep.TrainLoss, rep.TrainSeconds = res.MeanLoss, res.Seconds
		if m, err = llama.New(m.Config, res.Weights); err != nil {
			return nil, err
		}
		tb, err := tok.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if err := m.Weights.Save(modelDir, m.Config.Specs(), map[string][]byte{"config.json": m.Config.JSON(), tokenizers.Llama2CFile: tb},
			checkpoint.WriteOptions{Force: true}); err != nil {
			return nil, err
		}
		logf("trained in %.0fs (loss %.3f); saved %s", res.Seconds, res.MeanLoss, modelDir)
	}
	lap("training")

	// 3. Recall.
	r := rand.New(rand.NewPCG(st.Seed, 2))
	sample := r.Perm(len(c.People))[:min(st.RecallPeople, len(c.People))]
	var trainQ, heldQ []query
	var trainA, heldA []int
	for _, pi := range sample {
		p := c.People[pi]
		for _, t := range c.Templates {
			q := query{t.Prompt(p.Name), p.Values[t.Attr]}
			if t.HeldOut {
				heldQ, heldA = append(heldQ, q), append(heldA, t.Attr)
			} else {
				trainQ, trainA = append(trainQ, q), append(trainA, t.Attr)
			}
		}
	}
	var trainHits, heldHits []bool
	if rep.RecallTrain, trainHits, err = recall(m, tok, trainQ); err != nil {
		return nil, err
	}
	if rep.RecallHeldOut, heldHits, err = recall(m, tok, heldQ); err != nil {
		return nil, err
	}
	for ai, a := range attributes() {
		rep.RecallByAttr[a.Name] = [2]float64{fraction(trainHits, trainA, ai), fraction(heldHits, heldA, ai)}
		logf("recall of %s: training templates %.3f, held-out %.3f", a.Name, rep.RecallByAttr[a.Name][0], rep.RecallByAttr[a.Name][1])
	}
	logf("recall: training templates %.3f, held-out templates %.3f (%d people)", rep.RecallTrain, rep.RecallHeldOut, len(sample))
	lap("recall")

	// 4. The edit set, in EasyEdit's CounterFact-style JSON.
	if len(st.Counts) == 0 {
		return nil, fmt.Errorf("no edit counts in the settings")
	}
	if st.EditLayer < 0 || st.EditLayer >= st.Layers {
		return nil, fmt.Errorf("edit layer %d: the model has layers 0..%d", st.EditLayer, st.Layers-1)
	}
	bgPeople := backgroundPeople(c, st.BackgroundPeople, st.Seed)
	n := max(slices.Max(st.Counts), st.Singles)
	recs := editSet(c, n+st.Calibration, st.Locality, bgPeople, st.Seed)
	if len(recs) <= st.Calibration {
		return nil, fmt.Errorf("settings: the corpus has %d editable (person, attribute) pairs outside the %d background people, not more than Calibration %d: raise People, or lower BackgroundPeople or Calibration", len(recs), len(bgPeople), st.Calibration)
	}
	calibRecs := recs[min(n, len(recs)-st.Calibration):]
	recs = recs[:len(recs)-len(calibRecs)]
	rep.EditSet = filepath.Join(o.Out, "edits.json")
	edits, err := writeEditSet(rep.EditSet, recs)
	if err != nil {
		return nil, err
	}
	calib, err := writeEditSet(filepath.Join(o.Out, "calibration-edits.json"), calibRecs)
	if err != nil {
		return nil, err
	}
	rep.Edits = len(edits)
	counts := slices.DeleteFunc(slices.Clone(st.Counts), func(n int) bool { return n > len(edits) })
	if len(counts) < len(st.Counts) {
		logf("only %d distinct (person, attribute) pairs to edit: counts %v kept of %v", len(edits), counts, st.Counts)
	}
	logf("edit set: %d edits in %s", len(edits), rep.EditSet)
	lap("edit set")

	// 5. MEMOIR, GRACE and FT-L.
	base, err := memoir.NewBase(m, tok)
	if err != nil {
		return nil, err
	}
	es := editingSettings{Layer: st.EditLayer, Singles: st.Singles, Counts: counts, Background: backgroundPrompts(c, bgPeople, st.Seed), Calibration: calib,
		MEMOIRIterations: st.MEMOIRIterations}
	if rep.Variants, rep.Overlaps, rep.Costs, err = runEditing(base, edits, es, o.Out, logf); err != nil {
		return nil, err
	}
	var all []*memoir.Result
	for _, v := range rep.Variants {
		for _, r := range v.Results {
			r.Label = v.Name
			all = append(all, r)
		}
	}
	rep.Table = memoir.Markdown(all)
	if err := checkpoint.WriteFileAtomic(filepath.Join(o.Out, "table.md"), []byte(rep.Table)); err != nil {
		return nil, err
	}
	png, err := plotMetrics(rep.Variants)
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(o.Out, "metrics.png"), png); err != nil {
		return nil, err
	}
	lap("editing")
	perEdit, err := json.Marshal(rep.Variants)
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(o.Out, "per-edit.json"), perEdit); err != nil {
		return nil, err
	}
	for _, v := range rep.Variants {
		for _, r := range v.Results {
			r.PerEdit = nil
		}
	}

	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(o.Out, "results.json"), data); err != nil {
		return nil, err
	}
	return rep, pretraining.Finish(o.Out)
}

// fraction is the share of hits among the queries of attribute attr.
func fraction(hits []bool, attrs []int, attr int) float64 {
	n, k := 0, 0
	for i, h := range hits {
		if attrs[i] == attr {
			n++
			if h {
				k++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// checkValueTokens checks that every value of an editable attribute is one
// token after a space.
func checkValueTokens(c *corpus, tok *tokenizers.Llama2C) error {
	for ai, a := range attributes() {
		if !a.Editable {
			continue
		}
		for _, v := range c.Values[ai] {
			if ids := tok.Encode(v, false, false); len(ids) != 1 {
				return fmt.Errorf("the %s %q is %d tokens with a vocabulary of %d, not one", a.Name, v, len(ids), tok.VocabSize())
			}
		}
	}
	return nil
}
