package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFolderAtomic(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "sub", "out")
	files := map[string][]byte{"a.txt": []byte("A"), "b.bin": {1, 2}}
	if err := WriteFolderAtomic(out, files, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	if err := WriteFolderAtomic(out, files, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output without force: %v", err)
	}
	if err := WriteFolderAtomic(out, map[string][]byte{"c": nil}, WriteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "a.txt")); err == nil {
		t.Error("force kept the old folder's files")
	}
	if err := WriteFolderAtomic(filepath.Join(out, "inner"), files, WriteOptions{Inputs: []string{out}}); err == nil || !strings.Contains(err.Error(), "inside input") {
		t.Errorf("output inside an input: %v", err)
	}
	if err := WriteFolderAtomic(filepath.Join(dir, "x"), map[string][]byte{"../evil": nil}, WriteOptions{}); err == nil {
		t.Error("a file name with a path was accepted")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}
