package memoir

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
)

// tinyTexts train the tokenizer of tinyBase.
var tinyTexts = []string{
	"Alice Smith was born in Lisbon.", "Bob Jones was born in Oslo.", "The hometown of Carol White is Rome.",
	"Alice Smith works for Veltrix.", "Bob Jones studied at Ashford.", "Carol White majored in physics.",
}

// tinyBase is a small random LLaMA (3 layers, MLP 32) with a byte-pair
// tokenizer trained on tinyTexts: no file needed.
func tinyBase(t testing.TB) *Base {
	t.Helper()
	tok, err := tokenizers.TrainLlama2C(tinyTexts, 400, "Oslo", "Veltrix", "Rome", "Ashford", "physics")
	if err != nil {
		t.Fatal(err)
	}
	c := llama.Config{ModelType: "llama", HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 3, NumAttentionHeads: 2,
		NumKeyValueHeads: 2, HeadDim: 8, VocabSize: tok.VocabSize(), MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		HiddenAct: "silu", TieWordEmbeddings: true, BOSTokenID: 1, EOSTokenIDs: []int{2}}
	m, err := llama.NewRandom(c, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBase(m, tok)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var tinyRequests = []EditRequest{
	{Prompt: "Alice Smith was born in", Target: "Oslo", Rephrases: []string{"The hometown of Alice Smith is", "Alice Smith was born in"},
		Locality: []Locality{{"Bob Jones studied at", "Ashford"}}},
	{Prompt: "Bob Jones works for", Target: "Veltrix Rome", Rephrases: []string{"The hometown of Bob Jones is"},
		Locality: []Locality{{"Carol White majored in", "physics"}, {"Alice Smith works for", "Veltrix"}}},
}

// tinyMEMOIR is MEMOIR on tinyBase with short settings.
func tinyMEMOIR(t testing.TB, b *Base) *MEMOIR {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Layer, cfg.Iterations, cfg.PrefixLengths, cfg.PrefixSeeds, cfg.Background = 1, 4, []int{2}, []string{"Bob"}, tinyTexts
	m, err := NewMEMOIR(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMEMOIRLoss checks the edit loss against a host computation: the
// cross-entropy of each sequence's target tokens, summed and divided by
// n_t + 1 (the reference's label mask counts the position before the first
// target), averaged over the sequences.
func TestMEMOIRLoss(t *testing.T) {
	b := tinyBase(t)
	m := tinyMEMOIR(t, b)
	req := tinyRequests[1] // a two-token target
	templates := []string{"{}", "Yes {}", "Carol White was born in Rome. {}"}
	for i := range m.memory {
		m.memory[i] = float32(math.Sin(float64(i))) * 0.3
	}
	mask := MaskOf(32, []int{1, 4, 7, 9, 20, 31})
	batches, err := trainingBatch(b, templates, req.Prompt, req.Target, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 2 {
		t.Fatalf("%d chunks of 3 rows in chunks of 2", len(batches))
	}
	w := withWeights(m.edited.Weights, m.state(mask.Floats(32)))
	got, _, err := lossAndGrad(m.grad, w, memoryName, batches)
	if err != nil {
		t.Fatal(err)
	}
	em, err := m.withMask(mask)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.0
	for _, tpl := range templates {
		ids, pl, err := b.Encode(strings.Replace(tpl, "{}", req.Prompt, 1), req.Target)
		if err != nil {
			t.Fatal(err)
		}
		logits := logitsOf(t, em, ids)
		v := b.Model.Config.VocabSize
		sum := 0.0
		for p := pl - 1; p < len(ids)-1; p++ {
			row := logits[p*v : (p+1)*v]
			mx := float64(slices.Max(row))
			z := 0.0
			for _, x := range row {
				z += math.Exp(float64(x) - mx)
			}
			sum += math.Log(z) + mx - float64(row[ids[p+1]])
		}
		nt := len(ids) - pl
		if nt != 2 {
			t.Fatalf("template %q: %d target tokens, want 2", tpl, nt)
		}
		want += sum / float64(nt+1) / float64(len(templates))
	}
	if math.Abs(got-want) > 1e-5*math.Max(1, want) {
		t.Errorf("edit loss %.7f, host computation %.7f", got, want)
	}
}

// TestGreedyScoring: the unedited model's greedy decoding without a cache
// gives what llama's KV-cache generation gives; GRACE is scored by greedy
// generation (its reliability is the agreement of Generate's tokens with the
// target), the others teacher-forced.
func TestGreedyScoring(t *testing.T) {
	b := tinyBase(t)
	prompt, err := b.EncodePrompt("Alice Smith was born in")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Greedy(prompt, 4)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := b.Model.Generate(prompt, llama.GenerateOptions{Steps: len(prompt) + 4, Stop: func(int) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < len(prompt)+4 || !slices.Equal(got, out[len(prompt):len(prompt)+4]) {
		t.Errorf("greedy decoding %v, KV-cache generation %v", got, out[len(prompt):])
	}

	cfg := DefaultGRACEConfig()
	cfg.Layer, cfg.Iterations = 1, 5
	g, err := NewGRACE(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFTL(b, FTLConfig{Layer: 1, LR: 5e-4, Steps: 2, StopLoss: 1e-2})
	if err != nil {
		t.Fatal(err)
	}
	if ScoringOf(g) != Greedy || ScoringOf(f) != TeacherForced || ScoringOf(tinyMEMOIR(t, b)) != TeacherForced {
		t.Fatal("GRACE must be scored greedily, MEMOIR and FT-L teacher-forced")
	}
	req := tinyRequests[1]
	if _, err := g.Edit(req); err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(g, b, []EditRequest{req}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, pl, err := b.Encode(req.Prompt, req.Target)
	if err != nil {
		t.Fatal(err)
	}
	gen, active, err := g.Generate(ids[:pl], len(ids)-pl)
	if err != nil {
		t.Fatal(err)
	}
	if !active || res.Scoring != Greedy || res.Reliability != Agreement(gen, ids[pl:]) || !res.PerEdit[0].Active {
		t.Errorf("GRACE: reliability %v (scoring %s, used %v), Generate gives %v (used %v) for target %v", res.Reliability, res.Scoring, res.PerEdit[0].Active, gen, active, ids[pl:])
	}
	// The replacement at the last prompt token sets the first generated
	// token as the teacher-forced prediction there does.
	pred, _, err := g.Predict(ids, pl)
	if err != nil {
		t.Fatal(err)
	}
	if gen[0] != pred[pl-1] {
		t.Errorf("GRACE: first generated token %d, teacher-forced prediction %d", gen[0], pred[pl-1])
	}
}

// TestRunSingleEdits: T = 1 averaged over single-edit runs gives, for each
// edit, what a fresh editor given that edit alone gives (Reset forgets
// everything), and the means of those.
func TestRunSingleEdits(t *testing.T) {
	b := tinyBase(t)
	gcfg := DefaultGRACEConfig()
	gcfg.Layer, gcfg.Iterations = 1, 5
	fcfg := FTLConfig{Layer: 1, LR: 5e-3, Steps: 3, StopLoss: 1e-2}
	fresh := map[Method]func() Editor{
		MethodMEMOIR: func() Editor { return tinyMEMOIR(t, b) },
		MethodGRACE: func() Editor {
			g, err := NewGRACE(b, gcfg)
			if err != nil {
				t.Fatal(err)
			}
			return g
		},
		MethodFTL: func() Editor {
			f, err := NewFTL(b, fcfg)
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
	}
	for _, method := range Methods() {
		ed := fresh[method]()
		res, err := RunSingleEdits(ed, b, tinyRequests, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Edits != 1 || len(res.PerEdit) != len(tinyRequests) || ed.Edits() != 0 {
			t.Fatalf("%s: T %d, %d runs, %d edits left", method, res.Edits, len(res.PerEdit), ed.Edits())
		}
		var rel []float64
		for i, req := range tinyRequests {
			alone := fresh[method]()
			if _, err := alone.Edit(req); err != nil {
				t.Fatal(err)
			}
			r, err := Evaluate(alone, b, []EditRequest{req}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e, want := res.PerEdit[i], r.PerEdit[0]
			if e.Index != i || e.Reliability != want.Reliability || *e.Generalization != *want.Generalization || *e.Locality != *want.Locality || e.Active != want.Active {
				t.Errorf("%s, edit %d: single run %+v, fresh editor %+v", method, i, *e, *want)
			}
			rel = append(rel, want.Reliability)
		}
		if res.Reliability != mean(rel) {
			t.Errorf("%s: reliability %v, mean of the runs %v", method, res.Reliability, mean(rel))
		}
	}
}

// TestOverlapsAndAutoThreshold: an edit's prompt overlaps its own mask
// fully, a rephrasing identical to the prompt too; the locality overlaps
// are the best matches; the automatic τ follows the number of masks.
func TestOverlapsAndAutoThreshold(t *testing.T) {
	b := tinyBase(t)
	m := tinyMEMOIR(t, b)
	m.cfg.FalseRoutingRate = DefaultFalseRoutingRate
	k := m.Config().TopK
	if got, want := m.Threshold(), ChanceThreshold(32, k, 1, DefaultFalseRoutingRate); got != want {
		t.Errorf("automatic τ with no masks %v, want that of one mask %v", got, want)
	}
	for _, req := range tinyRequests {
		if _, err := m.Edit(req); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := m.Threshold(), ChanceThreshold(32, k, 2, DefaultFalseRoutingRate); got != want {
		t.Errorf("automatic τ with 2 masks %v, want %v", got, want)
	}
	o, err := m.Overlaps(tinyRequests)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Own, []float64{1, 1}) || len(o.Rephrase) != 3 || o.Rephrase[1] != 1 || !o.RephraseOwnBest[1] || len(o.Locality) != 3 {
		t.Fatalf("overlaps %+v", o)
	}
	ids, _ := b.EncodePrompt(tinyRequests[1].Locality[1].Prompt)
	r, err := m.Route(ids)
	if err != nil {
		t.Fatal(err)
	}
	if o.Locality[2] != r.Overlap {
		t.Errorf("locality overlap %v, routing says %v", o.Locality[2], r.Overlap)
	}
	if _, err := m.Overlaps(tinyRequests[:1]); err == nil {
		t.Error("overlaps of 1 edit for a memory of 2 accepted")
	}
}
