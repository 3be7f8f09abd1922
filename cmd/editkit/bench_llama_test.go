package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/editkit/editkit/internal/bench"
)

// tinyLlamaArgs shrink the benchmark to a second or two on a random model
// of stories260K's shape.
var tinyLlamaArgs = []string{"bench", "llama", "--random", "--batch", "2", "--seq", "16", "--iters", "2", "--gen-steps", "12"}

// TestBenchLlamaWithoutTorch: the short benchmark runs, and a missing Python
// is reported, not fatal.
func TestBenchLlamaWithoutTorch(t *testing.T) {
	out, errOut, code := evRun(t, append(tinyLlamaArgs, "--python", "/nonexistent/python3", "--json")...)
	if code != 0 {
		t.Fatalf("bench llama: %s", errOut)
	}
	var r bench.LlamaReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if f := r.Editkit.Forward; f == nil || len(f.Seconds) != 2 || f.TokensPerSecond <= 0 || f.FirstSeconds <= 0 {
		t.Errorf("forward phase %+v", f)
	}
	if g := r.Editkit.Generate; g == nil || g.Steps != 12 || g.Generated != 12 || len(g.Tokens) != 13 || g.TokensPerSecond <= 0 {
		t.Errorf("generation %+v", g)
	}
	if !strings.HasPrefix(r.Model.Source, "random") || r.Model.Layers != 5 || r.Model.Vocab != 512 {
		t.Errorf("model %+v", r.Model)
	}
	if r.Torch != nil || !strings.Contains(r.TorchMissing, "no Python interpreter") || r.SameTokens != -1 {
		t.Errorf("torch %+v, missing %q, same tokens %d", r.Torch, r.TorchMissing, r.SameTokens)
	}
	out, _, code = evRun(t, append(tinyLlamaArgs, "--no-torch", "--gen-steps", "0", "-q")...)
	if code != 0 || !strings.Contains(out, "PyTorch reference: not available") || !strings.Contains(out, "tokens/s") || strings.Contains(out, "generation") {
		t.Errorf("text report:\n%s", out)
	}
	if _, errOut, code := evRun(t, "bench", "llama", "--random", "--seq", "4096", "--no-torch"); code == 0 || !strings.Contains(errOut, "positions") {
		t.Errorf("seq past the model's positions: code %d, %s", code, errOut)
	}
}

// TestBenchLlamaTorchReference runs the PyTorch side on the tiny run where
// Debian's python3-torch is installed: both sides decode the same tokens.
func TestBenchLlamaTorchReference(t *testing.T) {
	py := bench.DefaultPython()
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skipf("no torch for %s: %v", py, err)
	}
	out, errOut, code := evRun(t, append(tinyLlamaArgs, "--json")...)
	if code != 0 {
		t.Fatalf("bench llama: %s", errOut)
	}
	var r bench.LlamaReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Torch == nil || r.Torch.Forward == nil || r.Torch.Generate == nil || len(r.Torch.Forward.Seconds) != 2 {
		t.Fatalf("torch side %+v (missing: %s)", r.Torch, r.TorchMissing)
	}
	if r.Ratio("forward") <= 0 || r.Ratio("generate") <= 0 {
		t.Errorf("ratios %v %v", r.Ratio("forward"), r.Ratio("generate"))
	}
	if r.SameTokens != len(r.Editkit.Generate.Tokens) {
		t.Errorf("greedy tokens agree on %d of %d:\neditkit %v\nPyTorch %v", r.SameTokens, len(r.Editkit.Generate.Tokens), r.Editkit.Generate.Tokens, r.Torch.Generate.Tokens)
	}
}
