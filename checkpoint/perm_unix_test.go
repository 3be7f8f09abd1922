//go:build unix

package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOutputPermissions checks outputs get the modes of os.Create and
// os.Mkdir (less the umask), not the private 0600/0700 of temporary files.
func TestOutputPermissions(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	spec := []TensorSpec{{Name: "a", DType: F32, Shape: []int64{1}}}
	tests := []struct {
		out  string
		mode os.FileMode
	}{
		{"o.safetensors", 0o644},
		{"o", os.ModeDir | 0o755},
	}
	for _, tc := range tests {
		out := filepath.Join(dir, tc.out)
		writeAll(t, out, spec, WriteOptions{}, map[string][]float32{"a": {1}})
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.out, fi.Mode(), tc.mode)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "o", SingleFile))
	if err != nil || fi.Mode() != 0o644 {
		t.Errorf("%s mode %v, %v; want 0644", SingleFile, fi.Mode(), err)
	}
	p := filepath.Join(dir, "c.yaml")
	if err := WriteFileAtomic(p, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o644 {
		t.Errorf("WriteFileAtomic mode %v, %v; want 0644", fi.Mode(), err)
	}
}

// TestOpenRefusesFIFOs: a named pipe given as a checkpoint, or standing in
// for a folder's model.safetensors, is refused at once instead of blocking
// on open.
func TestOpenRefusesFIFOs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.safetensors")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := Open(fifo)
	wantErr(t, err, fifo, "not a regular file", "named pipe")
	folder := filepath.Join(dir, "model")
	os.Mkdir(folder, 0o755)
	if err := syscall.Mkfifo(filepath.Join(folder, SingleFile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(folder)
	wantErr(t, err, SingleFile, "named pipe")
	if err := CheckReadable(fifo); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("CheckReadable(fifo) = %v", err)
	}
	if err := CheckReadable(folder); err != nil {
		t.Errorf("CheckReadable(folder) = %v", err)
	}
}

// TestReadSideFileRefusesFIFOs: a named pipe standing in for a folder's
// config.json or tokenizer is refused instead of blocking the read, and a
// missing file is still os.ErrNotExist (callers fall back on it).
func TestReadSideFileRefusesFIFOs(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := syscall.Mkfifo(cfg, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := ReadSideFile(cfg)
	wantErr(t, err, cfg, "named pipe")
	if _, err := ReadSideFile(filepath.Join(dir, "tokenizer.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing side file: %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadSideFile(filepath.Join(dir, "vocab.json")); err != nil || string(data) != "{}" {
		t.Errorf("a regular side file: %q, %v", data, err)
	}
}
