//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/editkit/editkit/checkpoint"
)

// buildBinary builds editkit into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the editkit binary and merges 400 MB")
	}
	bin := filepath.Join(t.TempDir(), "editkit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// writeLargeFamily writes base, ft1 and ft2 .safetensors of 4 float32
// tensors of n values each into dir.
func writeLargeFamily(t *testing.T, dir string, n int) {
	t.Helper()
	buf := make([]float32, 1<<20)
	for m, name := range []string{"base", "ft1", "ft2"} {
		var specs []checkpoint.TensorSpec
		for i := range 4 {
			specs = append(specs, checkpoint.TensorSpec{Name: fmt.Sprintf("model.layers.%d.mlp.weight", i), DType: checkpoint.F32, Shape: []int64{int64(n)}})
		}
		w, err := checkpoint.Create(filepath.Join(dir, name+".safetensors"), specs, checkpoint.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			for off := 0; off < n; off += len(buf) {
				k := min(len(buf), n-off)
				for j := range buf[:k] {
					buf[j] = float32((off+j+7*m)%251) / 100
				}
				if err := w.WriteFloat32(s.Name, buf[:k]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSignalsRemovePartialOutputs starts real merges of a 400 MB family,
// interrupts each midway, once per signal, and checks the exit status, the
// line saying what was removed and that the folder holds exactly the inputs,
// unchanged. Then it kills one with SIGKILL, which leaves its temporary,
// and checks the next run removes it with a notice and writes the merge.
func TestSignalsRemovePartialOutputs(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	writeLargeFamily(t, dir, 8<<20) // 128 MiB per checkpoint
	inputs := []string{"base.safetensors", "ft1.safetensors", "ft2.safetensors"}
	hashes := hashFiles(t, dir, inputs)
	args := []string{"merge", "--base", "base.safetensors", "--models", "ft1.safetensors", "ft2.safetensors",
		"--method", "task_arithmetic", "--lambda", "0.5", "--shard-size", "32MB", "-o", "merged"}

	// interrupt starts the merge, waits for its partial output to hold a
	// shard, sends sig and returns the exit status and stderr. A merge that
	// finished before the signal is retried.
	interrupt := func(sig syscall.Signal) (int, string) {
		t.Helper()
		for try := 0; try < 3; try++ {
			cmd := exec.Command(bin, args...)
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if m, _ := filepath.Glob(filepath.Join(dir, ".merged.tmp-*", "model-*")); len(m) > 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode(), stderr.String()
			}
			if err != nil {
				t.Fatal(err)
			}
			// It finished first: start again.
			os.RemoveAll(filepath.Join(dir, "merged"))
		}
		t.Fatalf("the merge finished before %v three times", sig)
		return 0, ""
	}

	for _, tc := range []struct {
		sig    syscall.Signal
		name   string
		status int
	}{
		{syscall.SIGINT, "SIGINT", 130},
		{syscall.SIGTERM, "SIGTERM", 143},
		{syscall.SIGHUP, "SIGHUP", 129},
	} {
		status, stderr := interrupt(tc.sig)
		if status != tc.status {
			t.Errorf("%s: exit status %d, want %d\n%s", tc.name, status, tc.status, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			if !strings.Contains(l, "%") { // progress lines only: the failing work says nothing
				t.Errorf("%s: stderr has %q besides the interruption line", tc.name, l)
			}
		}
		if !strings.HasPrefix(last, "editkit: interrupted by "+tc.name+"; removed the partial output .merged.tmp-") || !strings.HasSuffix(last, "B)") {
			t.Errorf("%s: last line %q does not say what was removed", tc.name, last)
		}
		if names := dirNames(t, dir); !slices.Equal(names, inputs) {
			t.Errorf("%s: the folder holds %v, want the inputs only", tc.name, names)
		}
	}
	if got := hashFiles(t, dir, inputs); !slices.Equal(got, hashes) {
		t.Error("an input changed")
	}

	// SIGKILL cannot be handled: the temporary stays, and the next run of
	// the same output removes it.
	if status, _ := interrupt(syscall.SIGKILL); status != -1 {
		t.Errorf("SIGKILL: exit status %d", status)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, ".merged.tmp-*"))
	if len(stale) != 1 {
		t.Fatalf("after SIGKILL: temporaries %v, want one", stale)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	want := "editkit: notice: removed " + filepath.Base(stale[0])
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "left by an interrupted run") {
		t.Errorf("rerun said %q, want a notice %q", out, want)
	}
	if names := dirNames(t, dir); !slices.Equal(names, append(slices.Clone(inputs), "merged")) {
		t.Errorf("after the rerun the folder holds %v", names)
	}
}

// dirNames lists a folder, hidden entries included, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
