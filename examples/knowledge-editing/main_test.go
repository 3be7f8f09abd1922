package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/memoir"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
)

// TestQuick runs the whole experiment with --quick and checks what it must
// show at any size: the trained model recalls facts above chance, every
// method makes each single edit (reliability 1 at T = 1), the model folder
// is one 'editkit generate' loads, the edit file is one 'editkit memoir'
// reads, and the table and plots are written.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick experiment trains a model (about 10 s)")
	}
	out := t.TempDir()
	r, err := run(options{Quick: true, Out: out, Log: pretraining.TestLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r.Table)

	// Chance: a uniform guess among the values in use (the birth date is
	// month, day and year: 1/(12·28·50)).
	chance := 0.0
	for _, a := range attributes() {
		if a.Values == nil {
			chance += 1.0 / (12 * 28 * 50)
		} else {
			chance += 1 / float64(valueCount(a, r.Settings.Values))
		}
	}
	chance /= float64(len(attributes()))
	if r.RecallTrain <= chance {
		t.Errorf("recall on training templates %.3f, not above chance %.3f", r.RecallTrain, chance)
	}
	t.Logf("recall: training templates %.3f, held-out %.3f (chance %.3f)", r.RecallTrain, r.RecallHeldOut, chance)

	names := map[string]bool{}
	for _, v := range r.Variants {
		names[v.Name] = true
		if len(v.Results) != 1+len(r.Settings.Counts) || v.Results[0].Edits != 1 {
			t.Fatalf("%s: %d results", v.Name, len(v.Results))
		}
		if got := v.Results[0].Reliability; got != 1 {
			t.Errorf("%s: reliability %.3f at T = 1 (mean of %d single edits), want 1", v.Name, got, r.Settings.Singles)
		}
		for _, res := range v.Results {
			for _, x := range []float64{res.Reliability, res.Generalization, res.Locality} {
				if x < 0 || x > 1 {
					t.Errorf("%s at T = %d: rates %+v out of [0, 1]", v.Name, res.Edits, res.Rates)
				}
			}
		}
	}
	for _, n := range []string{"MEMOIR τ=0.4", "MEMOIR τ=auto", "GRACE", "FT-L"} {
		if !names[n] {
			t.Errorf("no %s in the results", n)
		}
	}
	if len(r.Overlaps) != len(r.Settings.Counts) || r.Overlaps[0].Overlaps.Own[0] != 1 {
		t.Errorf("overlaps: %d records", len(r.Overlaps))
	}

	// The outputs.
	for _, f := range []string{"results.json", "per-edit.json", "table.md", "metrics.png", "edits.json", "overlaps-T6.png", "model/config.json", "model/model.safetensors", "model/tokenizer.bin"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty: %v", f, err)
		}
	}
	edits, format, err := memoir.LoadEdits(filepath.Join(out, "edits.json"))
	if err != nil || format != memoir.CounterFact || len(edits) != r.Edits || len(edits[0].Rephrases) != 3 || len(edits[0].Locality) != 2 {
		t.Fatalf("edits.json: %d edits in format %q (%v)", len(edits), format, err)
	}
	// The model folder loads as 'editkit generate' loads it, and the
	// trained model continues a training sentence with its fact.
	m, err := llama.Load(filepath.Join(out, "model"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizers.Load(filepath.Join(out, "model"))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(edits[0].Prompt, true, false)
	gen, _, err := m.Generate(ids, llama.GenerateOptions{Steps: len(ids) + 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generate: %q", tok.Decode(gen))
	if !strings.HasPrefix(tok.Decode(gen), edits[0].Prompt) {
		t.Errorf("generation %q does not start with the prompt %q", tok.Decode(gen), edits[0].Prompt)
	}

	// The trained model is reused only by a run with the same settings.
	if _, err := run(options{Quick: true, Out: out, Settings: `{"Seed":2}`}); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("a rerun with other settings into the same folder: %v", err)
	}
}

// TestTooFewEdits: settings that leave no edit beside the calibration
// edits are an error naming them, not a panic.
func TestTooFewEdits(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a tiny model")
	}
	_, err := run(options{Quick: true, Out: t.TempDir(), Settings: `{"Calibration":1000}`})
	if err == nil || !strings.Contains(err.Error(), "Calibration 1000") {
		t.Errorf("Calibration 1000 on the quick corpus: %v", err)
	}
}
