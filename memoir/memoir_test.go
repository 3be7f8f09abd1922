package memoir

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

var (
	storiesOnce sync.Once
	storiesDir  string
	storiesErr  error
	storiesSkip string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if storiesDir != "" {
		os.RemoveAll(filepath.Dir(storiesDir))
	}
	os.Exit(code)
}

// stories converts llama2.c's stories260K (with tok512) into a Hugging
// Face folder once per test binary and loads it; it skips the test when the
// files are absent.
func stories(tb testing.TB) *Base {
	tb.Helper()
	storiesOnce.Do(func() {
		dir := os.Getenv(envLLMData)
		if dir == "" {
			dir = filepath.Join("..", "..", "shared", "data", "llm")
		}
		bin, tok := filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "tok512.bin")
		for _, p := range []string{bin, tok} {
			if _, err := os.Stat(p); err != nil {
				storiesSkip = "skipping: " + p + " is absent (stories260K.bin and tok512.bin live in ../shared/data/llm beside the repository, or set " + envLLMData + ")"
				return
			}
		}
		tmp, err := os.MkdirTemp("", "memoir-test-")
		if err != nil {
			storiesErr = err
			return
		}
		storiesDir = filepath.Join(tmp, "stories260K")
		_, storiesErr = llama.ConvertLlama2C(bin, storiesDir, llama.Llama2CConvertOptions{Tokenizer: tok})
	})
	if storiesSkip != "" {
		tb.Skip(storiesSkip)
	}
	if storiesErr != nil {
		tb.Fatal(storiesErr)
	}
	b, err := LoadBase(storiesDir, "")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func tinyEdits(tb testing.TB) []EditRequest {
	tb.Helper()
	edits, _, err := LoadEdits(tinyStoriesEdits)
	if err != nil {
		tb.Fatal(err)
	}
	return edits
}

func logitsOf(tb testing.TB, m *llama.Model, ids []int) []float32 {
	tb.Helper()
	t, err := llama.IDs(ids)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := m.Logits(t)
	if err != nil {
		tb.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out)
}

// TestZeroMemory checks the MEMOIR adapter on a tiny random model: a zero
// W_m (under a full mask) or an empty mask (under any W_m) leaves the
// logits exactly as they are; a non-zero memory under a mask changes them.
func TestZeroMemory(t *testing.T) {
	c := llama.Config{ModelType: "llama", HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2, NumAttentionHeads: 2,
		NumKeyValueHeads: 1, HeadDim: 8, VocabSize: 40, MaxPositionEmbeddings: 32, RMSNormEps: 1e-5, RopeTheta: 10000,
		HiddenAct: "silu", BOSTokenID: 1, EOSTokenIDs: []int{2}}
	base, err := llama.NewRandom(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	a := &maskedResidual{layer: 1, hidden: 16, inter: 24}
	ones, zeros := make([]float32, 24), make([]float32, 24)
	for i := range ones {
		ones[i] = 1
	}
	rnd := models.RandomWeights([]checkpoint.TensorSpec{models.Spec(memoryName, 16, 24)}, 3, func(checkpoint.TensorSpec) models.Init { return models.Normal(1) })
	ids := []int{1, 5, 9, 13, 17, 21}
	want := logitsOf(t, base, ids)
	for _, tc := range []struct {
		name   string
		memory *tensors.Tensor
		mask   []float32
		same   bool
	}{
		{"zero memory, full mask", tensorOf(make([]float32, 16*24), 16, 24), ones, true},
		{"random memory, empty mask", rnd[memoryName], zeros, true},
		{"random memory, full mask", rnd[memoryName], ones, false},
	} {
		em, err := base.WithAdapter(a, models.Weights{memoryName: tc.memory, maskName: tensorOf(tc.mask, 24)})
		if err != nil {
			t.Fatal(err)
		}
		got := logitsOf(t, em, ids)
		if same := slices.Equal(got, want); same != tc.same {
			t.Errorf("%s: logits unchanged = %v, want %v", tc.name, same, tc.same)
		}
	}
}

// TestMEMOIROneEdit edits stories260K once with MEMOIR's default settings:
// the model then predicts the target after the prompt (reliability 1), a
// far-away prompt is routed to no edit and its logits are the unedited
// model's bit for bit, and the memory saved and loaded gives the same
// masks and logits.
func TestMEMOIROneEdit(t *testing.T) {
	b := stories(t)
	e := tinyEdits(t)[0] // Lily's favorite toy was a → kite
	m, err := NewMEMOIR(b, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if m.Layer() != 4 || m.Config().TopK != 49 || len(m.Templates()) != 11 || m.Templates()[0] != "{}" {
		t.Fatalf("layer %d, k %d, templates %q; want layer 4, k 49, \"{}\" and 10 prefixes", m.Layer(), m.Config().TopK, m.Templates())
	}
	ids, pl, err := b.Encode(e.Prompt, e.Target)
	if err != nil {
		t.Fatal(err)
	}
	before, _, err := m.Predict(ids, pl)
	if err != nil {
		t.Fatal(err)
	}
	if acc := TokenAccuracy(before, ids, pl); acc == 1 {
		t.Fatalf("the unedited model already predicts %q", e.Target)
	}
	st, err := m.Edit(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edit: %+v", st)
	if m.Edits() != 1 || m.Masks()[0].Count() != 49 {
		t.Fatalf("%d masks of %d positions, want 1 of 49", m.Edits(), m.Masks()[0].Count())
	}
	res, err := Evaluate(m, b, []EditRequest{e}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reliability != 1 || res.Active.Reliability != 1 {
		t.Errorf("reliability %v (memory used %v), want 1", res.Reliability, res.Active.Reliability)
	}
	t.Logf("one edit: %+v, memory used %+v", res.Rates, res.Active)

	// A far-away prompt (the edit's locality prompt; its mask overlaps the
	// edit's by 18/49 ≈ 0.37 < τ, near the 0.33–0.38 the reference reports
	// for irrelevant prompts): routed to no edit, the unedited logits
	// exactly.
	far, err := b.EncodePrompt(e.Locality[0].Prompt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Route(far)
	if err != nil {
		t.Fatal(err)
	}
	if r.Active || r.Overlap >= m.Config().Threshold {
		t.Fatalf("far-away prompt routed: %+v", r)
	}
	logits, _, err := m.Logits(far, len(far))
	if err != nil {
		t.Fatal(err)
	}
	t2, _, _ := b.padRows(far)
	plain, err := b.Model.Logits(t2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tensors.MustCopyFlatData[float32](logits), tensors.MustCopyFlatData[float32](plain)) {
		t.Error("a prompt routed to no edit has other logits than the unedited model")
	}
	// The edit prompt itself: overlap 1 with its own mask.
	if r, _ := m.Route(ids[:pl]); r.Index != 0 || r.Overlap != 1 || !r.Active {
		t.Errorf("the edit prompt routes to %+v, want edit 0 with overlap 1", r)
	}

	// Save and load: the same state, the same logits.
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := m.Save(path, SaveOptions{Metadata: map[string]string{"note": "test"}}); err != nil {
		t.Fatal(err)
	}
	ed, info, err := Load(path, b)
	if err != nil {
		t.Fatal(err)
	}
	m2 := ed.(*MEMOIR)
	if info.Method != MethodMEMOIR || info.Edits != 1 || info.Layer != 4 || info.Metadata["note"] != "test" {
		t.Errorf("memory info %+v", info)
	}
	if !slices.Equal(m2.Memory(), m.Memory()) || !slices.Equal(m2.Background(), m.Background()) ||
		!slices.Equal(m2.TopHash().Perm, m.TopHash().Perm) || !slices.Equal(m2.Masks()[0], m.Masks()[0]) ||
		!slices.Equal(m2.Templates(), m.Templates()) || m2.Config().Threshold != m.Config().Threshold {
		t.Error("the loaded memory differs from the saved one")
	}
	for _, q := range [][]int{ids, far} {
		a, _, err := m.Logits(q, min(pl, len(q)))
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := m2.Logits(q, min(pl, len(q)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tensors.MustCopyFlatData[float32](a), tensors.MustCopyFlatData[float32](c)) {
			t.Error("the loaded memory gives other logits")
		}
	}
	// Generation routes the prompt and keeps the mask: greedy decoding
	// continues the prompt with the target.
	gm, desc, err := ModelForGeneration(m2, ids[:pl])
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := gm.Generate(ids[:pl], llama.GenerateOptions{Steps: len(ids) - 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[:len(ids)], ids) {
		t.Errorf("generation (%s) gave %q, want %q", desc, b.Tok.Decode(out), b.Tok.Decode(ids))
	}
	// The memory refuses another model.
	other, err := llama.NewRandom(b.Model.Config, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path, &Base{Model: other, Tok: b.Tok}); err == nil {
		t.Error("a memory loaded onto another model")
	}
}

// TestBaselinesOneEdit edits stories260K once with GRACE and FT-L and
// round-trips their state through a memory file.
func TestBaselinesOneEdit(t *testing.T) {
	b := stories(t)
	e := tinyEdits(t)[3]
	ids, pl, err := b.Encode(e.Prompt, e.Target)
	if err != nil {
		t.Fatal(err)
	}
	farIDs, farPL, err := b.Encode("The sun was shining and the birds were", "singing")
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []Method{MethodGRACE, MethodFTL} {
		ed, err := New(method, b, -1)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ed.Edit(e)
		if err != nil {
			t.Fatal(err)
		}
		pred, active, err := ed.Predict(ids, pl)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v; accuracy %.2f", method, st, TokenAccuracy(pred, ids, pl))
		if !active || pred[pl-1] != ids[pl] {
			t.Errorf("%s: after the edit the first target token is %d (memory used %v), want %d", method, pred[pl-1], active, ids[pl])
		}
		if method == MethodGRACE {
			g := ed.(*GRACE)
			if g.Codebook().Len() != 1 || g.Codebook().Eps[0] != 1 {
				t.Errorf("GRACE codebook: %d entries, ε %v", g.Codebook().Len(), g.Codebook().Eps)
			}
			if _, active, _ := ed.Predict(farIDs, farPL); active {
				t.Error("GRACE: a far-away prompt lies within the edit's radius")
			}
		}
		path := filepath.Join(t.TempDir(), string(method)+".safetensors")
		if err := ed.Save(path, SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		ed2, info, err := Load(path, b)
		if err != nil {
			t.Fatal(err)
		}
		if info.Method != method || ed2.Edits() != 1 || ed2.Layer() != ed.Layer() {
			t.Errorf("%s: loaded %+v", method, info)
		}
		for _, q := range []struct {
			ids []int
			pl  int
		}{{ids, pl}, {farIDs, farPL}} {
			p1, a1, err1 := ed.Predict(q.ids, q.pl)
			p2, a2, err2 := ed2.Predict(q.ids, q.pl)
			if err1 != nil || err2 != nil || !slices.Equal(p1, p2) || a1 != a2 {
				t.Errorf("%s: the loaded memory predicts %v (%v), the saved one %v (%v)", method, p2, a2, p1, a1)
			}
		}
	}
}

// TestSequentialCheckpoints checks that evaluating after T of a longer run
// gives what a run of T edits gives, on a small random model with tok512.
func TestSequentialCheckpoints(t *testing.T) {
	sb := stories(t)
	c := sb.Model.Config
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim = 16, 24, 2, 2, 1, 8
	m, err := llama.NewRandom(c, 11)
	if err != nil {
		t.Fatal(err)
	}
	b := &Base{Model: m, Tok: sb.Tok}
	edits := tinyEdits(t)[:3]
	cfg := DefaultConfig()
	cfg.Iterations, cfg.PrefixLengths, cfg.Background = 3, []int{2}, BackgroundPrompts[:8]
	newEd := func() Editor {
		ed, err := NewMEMOIR(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ed
	}
	long, err := RunSequential(newEd(), b, edits, []int{3, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, err := RunSequential(newEd(), b, edits, []int{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(long) != 2 || long[0].Edits != 1 || long[1].Edits != 3 || len(long[1].PerEdit) != 3 {
		t.Fatalf("results for T = %d, %d", long[0].Edits, long[1].Edits)
	}
	if long[0].Rates != short[0].Rates || long[0].Active != short[0].Active {
		t.Errorf("T = 1 within a run of 3: %+v, alone: %+v", long[0].Rates, short[0].Rates)
	}
	if _, err := RunSequential(newEd(), b, edits, []int{4}, nil); err == nil {
		t.Error("T beyond the edits accepted")
	}
	// An empty memory saves and loads; it routes nothing.
	path := filepath.Join(t.TempDir(), "empty.safetensors")
	if err := newEd().Save(path, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	ed, info, err := Load(path, b)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := b.EncodePrompt(edits[0].Prompt)
	if info.Edits != 0 || ed.Edits() != 0 {
		t.Errorf("empty memory: %+v", info)
	} else if r, err := ed.(*MEMOIR).Route(ids); err != nil || r.Active || r.Index != -1 {
		t.Errorf("empty memory routes to %+v (%v)", r, err)
	}
	if err := ed.Save(path, SaveOptions{}); err == nil {
		t.Error("Save over an existing file without Force")
	}
	g, err := NewGRACE(b, DefaultGRACEConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ModelForGeneration(g, ids); err == nil {
		t.Error("generation with a GRACE memory accepted")
	}
}
