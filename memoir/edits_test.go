package memoir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/models/tokenizers"
)

// envLLMData names a folder holding tok512.bin, for running the tests
// against a copy outside ../shared.
const envLLMData = "EDITKIT_LLM_DATA"

const tinyStoriesEdits = "testdata/tinystories_edits.json"

func TestTinyStoriesEditSet(t *testing.T) {
	edits, format, err := LoadEdits(tinyStoriesEdits)
	if err != nil {
		t.Fatal(err)
	}
	if format != CounterFact || len(edits) != 120 {
		t.Fatalf("%d edits in the %s format, want 120 CounterFact-style", len(edits), format)
	}
	prompts := map[string]bool{}
	for i, e := range edits {
		if prompts[e.Prompt] {
			t.Errorf("edit %d: prompt %q appears twice", i, e.Prompt)
		}
		prompts[e.Prompt] = true
		if n := len(e.Rephrases); n < 1 || n > 2 {
			t.Errorf("edit %d: %d rephrasings, want 1 or 2", i, n)
		}
		if len(e.Locality) != 1 || e.Locality[0].Prompt == "" || e.Locality[0].Answer == "" {
			t.Errorf("edit %d: locality %+v, want one prompt with its answer", i, e.Locality)
		}
		if e.Subject == "" || !strings.Contains(e.Prompt, e.Subject) {
			t.Errorf("edit %d: subject %q is not in prompt %q", i, e.Subject, e.Prompt)
		}
		for _, r := range e.Rephrases {
			if r == e.Prompt || !strings.Contains(r, e.Subject) {
				t.Errorf("edit %d: rephrasing %q repeats the prompt or lacks the subject %q", i, r, e.Subject)
			}
		}
		if e.Target == e.GroundTruth || strings.TrimSpace(e.Target) != e.Target {
			t.Errorf("edit %d: target %q (ground truth %q)", i, e.Target, e.GroundTruth)
		}
	}
}

// TestTinyStoriesTargetsTokens checks with stories260K's tokenizer (tok512)
// that every target is 1 to 3 tokens and that it keeps those tokens after
// the prompt and a space (so the target span of "prompt target" is exactly
// the target's own tokens, as teacher-forced evaluation assumes).
func TestTinyStoriesTargetsTokens(t *testing.T) {
	dir := os.Getenv(envLLMData)
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "data", "llm")
	}
	p := filepath.Join(dir, "tok512.bin")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: %s is absent (the llama2.c tok512 tokenizer lives in ../shared/data/llm beside the repository, or set %s to a folder holding it)", p, envLLMData)
	}
	tok, err := tokenizers.LoadLlama2C(p)
	if err != nil {
		t.Fatal(err)
	}
	edits, _, err := LoadEdits(tinyStoriesEdits)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range edits {
		target := tok.Encode(e.Target, false, false) // with the dummy prefix: the tokens of " "+target
		if len(target) < 1 || len(target) > 3 {
			t.Errorf("edit %d: target %q is %d tokens %v, want 1 to 3", i, e.Target, len(target), target)
		}
		for _, prompt := range append([]string{e.Prompt}, e.Rephrases...) {
			full := tok.Encode(prompt+" "+e.Target, true, false)
			if !slices.Equal(full[len(full)-len(target):], target) {
				t.Errorf("edit %d: %q + %q does not end in the target's tokens %v: %v", i, prompt, e.Target, target, full)
			}
		}
	}
}
