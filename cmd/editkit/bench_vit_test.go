package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/editkit/editkit/internal/bench"
)

// tinyBenchArgs shrink both benchmarks to a second or two.
var tinyBenchArgs = []string{"bench", "vit", "--image", "32", "--batch", "2", "--iters", "2", "--width", "64", "--layers", "2", "--heads", "2", "--mlp", "128",
	"--steps", "2", "--train-image", "32", "--train-batch", "2", "--train-width", "32", "--train-layers", "2", "--train-heads", "2", "--train-mlp", "64"}

// TestBenchViTWithoutTorch: the short benchmark runs, and a missing Python
// is reported, not fatal.
func TestBenchViTWithoutTorch(t *testing.T) {
	out, errOut, code := evRun(t, append(tinyBenchArgs, "--python", "/nonexistent/python3", "--json", "--profile")...)
	if code != 0 {
		t.Fatalf("bench vit: %s", errOut)
	}
	var r bench.ViTReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	f, tr := r.Editkit.Forward, r.Editkit.Train
	if f == nil || len(f.Seconds) != 2 || f.ImagesPerSecond <= 0 || f.FirstSeconds <= 0 {
		t.Errorf("forward phase %+v", f)
	}
	if tr == nil || len(tr.Seconds) != 2 || tr.ImagesPerSecond <= 0 || len(tr.Loss) != 2 {
		t.Errorf("train phase %+v", tr)
	}
	if r.Torch != nil || !strings.Contains(r.TorchMissing, "no Python interpreter") {
		t.Errorf("torch %+v, missing %q", r.Torch, r.TorchMissing)
	}
	if p := r.Profile["forward"]; p == nil || p.Seconds < 0 {
		t.Errorf("no forward profile: %+v", r.Profile)
	}
	out, _, code = evRun(t, append(tinyBenchArgs, "--no-torch", "--iters", "1", "--steps", "0", "-q")...)
	if code != 0 || !strings.Contains(out, "PyTorch reference: not available") || !strings.Contains(out, "images/s") || strings.Contains(out, "Training") {
		t.Errorf("text report:\n%s", out)
	}
	if _, errOut, code := evRun(t, "bench", "vit", "--image", "33", "--no-torch"); code == 0 || !strings.Contains(errOut, "patches") {
		t.Errorf("image not a multiple of the patch: code %d, %s", code, errOut)
	}
}

// TestBenchViTTorchReference runs the PyTorch side on tiny shapes where
// Debian's python3-torch is installed.
func TestBenchViTTorchReference(t *testing.T) {
	py := bench.DefaultPython()
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skipf("no torch for %s: %v", py, err)
	}
	out, errOut, code := evRun(t, append(tinyBenchArgs, "--json")...)
	if code != 0 {
		t.Fatalf("bench vit: %s", errOut)
	}
	var r bench.ViTReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Torch == nil || r.Torch.Forward == nil || r.Torch.Train == nil || len(r.Torch.Forward.Seconds) != 2 || r.Torch.Train.ImagesPerSecond <= 0 {
		t.Fatalf("torch side %+v (missing: %s)", r.Torch, r.TorchMissing)
	}
	if r.Ratio("forward") <= 0 || r.Ratio("train") <= 0 {
		t.Errorf("ratios %v %v", r.Ratio("forward"), r.Ratio("train"))
	}
}
