//go:build unix

package main

import (
	"path/filepath"
	"syscall"
	"testing"
)

// TestFIFOInputsRefused: a named pipe given as a checkpoint, an edit file
// or a configuration is refused at once, naming the flag, instead of
// hanging on open.
func TestFIFOInputsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"inspect", "pipe"}, []string{"pipe is a named pipe"}},
		{[]string{"memoir", "edit", "--model", ".", "--edits", "pipe", "-o", "m.safetensors"}, []string{"--edits: pipe is a named pipe"}},
		{[]string{"merge", "--config", "pipe", "-o", "merged"}, []string{"--config: pipe is a named pipe"}},
		{[]string{"taskvector", "--base", "pipe", "--finetuned", "pipe", "-o", "tv.safetensors"}, []string{"--base: pipe is a named pipe"}},
	} {
		wantRefused(t, dir, tc.want, tc.args...)
	}
}
