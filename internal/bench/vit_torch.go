package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// TorchScriptEnv names the environment variable giving the path of the
// PyTorch reference script.
const TorchScriptEnv = "EDITKIT_TORCHREF_BENCH"

// torchScript is the script's path inside the repository.
var torchScript = filepath.Join("tools", "torchref", "bench_vit.py")

// TorchOptions say how to run the PyTorch reference.
type TorchOptions struct {
	Python  string // interpreter (DefaultPython)
	Script  string // bench_vit.py (FindTorchScript)
	Device  string // "cpu" or "cuda"
	Threads int    // torch.set_num_threads on the CPU (0: every CPU)
	// Timeout bounds the whole subprocess (0: 20 minutes).
	Timeout time.Duration
}

// DefaultPython is Debian's /usr/bin/python3 when present (its python3-torch
// is torch 1.13), else python3 from PATH.
func DefaultPython() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

// FindTorchScript finds tools/torchref/bench_vit.py: $EDITKIT_TORCHREF_BENCH,
// else in the working directory or a folder above it, else above the
// executable's folder.
func FindTorchScript() (string, error) {
	if p := os.Getenv(TorchScriptEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", TorchScriptEnv, err)
		}
		return p, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, torchScript)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("the PyTorch reference script %s was not found above the working directory or the executable (set $%s)", torchScript, TorchScriptEnv)
}

// torchOutput is what bench_vit.py prints.
type torchOutput struct {
	Error      string            `json:"error"`
	Torch      string            `json:"torch"`
	Device     string            `json:"device"`
	DeviceName string            `json:"device_name"`
	Threads    int               `json:"threads"`
	Notes      map[string]string `json:"notes"`
	Forward    *torchPhase       `json:"forward"`
	Train      *torchPhase       `json:"train"`
}

type torchPhase struct {
	FirstSeconds float64   `json:"first_seconds"`
	Seconds      []float64 `json:"seconds"`
	Loss         []float64 `json:"loss"`
}

// torchArgs are the script's arguments for the workloads of o.
func torchArgs(t TorchOptions, o ViTOptions) []string {
	threads := t.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	device := t.Device
	if device == "" {
		device = "cpu"
	}
	shape := func(prefix string, s ViTShape) []string {
		return []string{
			"--" + prefix + "width", strconv.Itoa(s.Width), "--" + prefix + "layers", strconv.Itoa(s.Layers),
			"--" + prefix + "heads", strconv.Itoa(s.Heads), "--" + prefix + "mlp", strconv.Itoa(s.MLP),
			"--" + prefix + "patch", strconv.Itoa(s.Patch), "--" + prefix + "image", strconv.Itoa(s.Image),
		}
	}
	args := []string{t.Script, "--device", device, "--threads", strconv.Itoa(threads), "--warmup", strconv.Itoa(o.Warmup),
		"--batch", strconv.Itoa(o.Batch), "--iters", strconv.Itoa(o.Iters),
		"--train-batch", strconv.Itoa(o.TrainBatch), "--steps", strconv.Itoa(o.Steps), "--train-classes", strconv.Itoa(o.Train.Classes),
		"--lr", fmt.Sprint(benchLR), "--weight-decay", fmt.Sprint(benchWeightDecay), "--clip", fmt.Sprint(benchClip)}
	args = append(args, shape("", o.Forward)...)
	return append(args, shape("train-", o.Train)...)
}

// runTorch runs the reference script and reads its results; the error says
// why there are none (no interpreter, no torch, no CUDA, a failure).
func runTorch(t TorchOptions, o ViTOptions) (*Side, error) {
	var out torchOutput
	err := runReference(&t, FindTorchScript, func() []string { return torchArgs(t, o) }, nil, &out, func() string { return out.Error })
	if err != nil {
		return nil, err
	}
	s := &Side{Name: "PyTorch", Version: out.Torch, Backend: out.Device, Threads: out.Threads, Notes: out.Notes}
	if out.DeviceName != "" {
		s.Backend += " (" + out.DeviceName + ")"
	}
	if f := out.Forward; f != nil {
		s.Forward = &ViTPhase{FirstSeconds: f.FirstSeconds, Seconds: f.Seconds}
		s.Forward.finish(o.Batch, float64(o.Batch)*withoutClasses(o.Forward).FLOPs())
	}
	if tr := out.Train; tr != nil {
		s.Train = &ViTPhase{FirstSeconds: tr.FirstSeconds, Seconds: tr.Seconds, Loss: tr.Loss}
		s.Train.finish(o.TrainBatch, 3*float64(o.TrainBatch)*o.Train.FLOPs())
	}
	return s, nil
}

func withoutClasses(s ViTShape) ViTShape { s.Classes = 0; return s }

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// tail returns the last n lines of s, joined by " | ".
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// runReference runs a PyTorch reference script (found by find when
// t.Script is empty) with the arguments args returns, feeding stdin, and
// decodes the last line it prints as JSON into out; reported returns the
// error the script itself reported in that JSON, if any. The error says why
// there are no results: no interpreter, no torch, a timeout, a failure.
func runReference(t *TorchOptions, find func() (string, error), args func() []string, stdin []byte, out any, reported func() string) error {
	if t.Python == "" {
		t.Python = DefaultPython()
	}
	if t.Script == "" {
		var err error
		if t.Script, err = find(); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath(t.Python); err != nil {
		return fmt.Errorf("no Python interpreter %s: %w", t.Python, err)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.Python, args()...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	jsonErr := json.Unmarshal(lastLine(stdout.Bytes()), out)
	switch {
	case jsonErr == nil && reported() != "":
		return errors.New(reported())
	case ctx.Err() != nil:
		return fmt.Errorf("%s %s ran past %s", t.Python, t.Script, timeout)
	case runErr != nil:
		return fmt.Errorf("%s %s: %v: %s", t.Python, t.Script, runErr, tail(stderr.String(), 5))
	case jsonErr != nil:
		return fmt.Errorf("%s %s printed no JSON result: %v: %s", t.Python, t.Script, jsonErr, tail(stdout.String()+stderr.String(), 5))
	}
	return nil
}
