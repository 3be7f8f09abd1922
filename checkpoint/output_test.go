package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOutputsCheck: the one guard of every output names the output's flag
// in its refusals and touches nothing it refuses.
func TestOutputsCheck(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	writeBytes(t, model, SingleFile, buildFile(nil))
	writeBytes(t, model, "config.json", []byte("{}"))
	data := filepath.Join(dir, "data")
	writeBytes(t, data, "mnist/classes.txt", []byte("0\n"))
	existing := writeBytes(t, dir, "table.md", []byte("old"))
	p := func(s string) string { return filepath.Join(dir, s) }
	tests := []struct {
		name  string
		o     Outputs
		want  []string // empty: accepted
		force bool
	}{
		{"side output over an input's file", Outputs{List: []Output{{"-o", p("out")}, {"--md", filepath.Join(model, "config.json")}}, Inputs: []string{model}},
			[]string{"--md", "config.json", "lies inside input", model}, false},
		{"side output is the input", Outputs{List: []Output{{"--markdown", model}}, Inputs: []string{model}},
			[]string{"--markdown", "is also an input"}, false},
		{"existing side output", Outputs{List: []Output{{"--md", existing}}},
			[]string{"--md", "already exists", "--force"}, false},
		{"existing side output with force", Outputs{List: []Output{{"--md", existing}}, Force: true}, nil, true},
		{"two outputs, one path", Outputs{List: []Output{{"-o", p("m.safetensors")}, {"--save-masks", p("m.safetensors")}}},
			[]string{"-o", "--save-masks", "same path"}, false},
		{"output inside another", Outputs{List: []Output{{"-o", p("merged")}, {"--save-masks", p("merged/masks.safetensors")}}},
			[]string{"--save-masks", "lies inside -o"}, false},
		{"inside a data folder is fine", Outputs{List: []Output{{"-o", filepath.Join(data, "head.safetensors")}}, Roots: []string{data}}, nil, false},
		{"replacing a data folder is not", Outputs{List: []Output{{"-o", data}}, Roots: []string{data}, Force: true},
			[]string{"-o", "data folder"}, true},
		{"a file in the way", Outputs{List: []Output{{"--json-out", filepath.Join(existing, "r.json")}}},
			[]string{"--json-out", "is a file, not a folder"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := treeDigest(t, dir)
			_, err := tc.o.Check()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantErr(t, err, tc.want...)
			if after := treeDigest(t, dir); after != before {
				t.Errorf("the folder changed: %s → %s", before, after)
			}
		})
	}
}

// treeDigest describes every file under dir with its content.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(p)
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			b.WriteString("=" + string(data))
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

// TestWriteFileGuard: WriteFile refuses inputs and existing files without
// Force, and leaves no temporary.
func TestWriteFileGuard(t *testing.T) {
	dir := t.TempDir()
	in := writeBytes(t, dir, "in.json", []byte("input"))
	out := filepath.Join(dir, "out.md")
	if err := WriteFile(in, []byte("x"), WriteOptions{Inputs: []string{in}, Force: true}); err == nil || !strings.Contains(err.Error(), "is also an input") {
		t.Errorf("writing over an input: %v", err)
	}
	if err := WriteFile(out, []byte("one"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(out, []byte("two"), WriteOptions{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("replacing without force: %v", err)
	}
	if err := WriteFile(out, []byte("three"), WriteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "three" {
		t.Errorf("out holds %q", b)
	}
	if b, _ := os.ReadFile(in); string(b) != "input" {
		t.Errorf("the input holds %q", b)
	}
	// A file appearing while ours was written is not replaced.
	f, err := CreateFile(filepath.Join(dir, "late.md"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeBytes(t, dir, "late.md", []byte("theirs"))
	f.WriteString("ours")
	if err := f.Commit(); err == nil || !strings.Contains(err.Error(), "appeared while writing") {
		t.Errorf("commit over a file that appeared: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "late.md")); string(b) != "theirs" {
		t.Errorf("late.md holds %q", b)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"in.json", "late.md", "out.md"}) {
		t.Errorf("folder holds %v", names)
	}
}

// TestRemoveStale: temporaries nobody holds (a killed run's) are removed,
// those of a writer still running are kept, and a previous output moved
// aside by a run killed while replacing it is put back.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "merged")
	specs := []TensorSpec{{Name: "a", DType: F32, Shape: []int64{1}}}
	live, err := Create(out, specs, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	writeBytes(t, dir, ".merged.tmp-dead1/model.safetensors", make([]byte, 1000))
	writeBytes(t, dir, ".merged.tmp-dead2", make([]byte, 10))
	writeBytes(t, dir, ".other.tmp-dead3", nil)                          // another output's
	writeBytes(t, dir, ".merged.tmp-NOT_OURS", nil)                      // not a temporary's name
	writeBytes(t, dir, ".merged.tmp-prev.old/config.json", []byte("{}")) // moved aside, never replaced
	removed, err := RemoveStale(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range removed {
		got = append(got, filepath.Base(r.Path)+" "+r.String()[len(r.Path):])
	}
	want := []string{".merged.tmp-dead1  (1.0 kB)", ".merged.tmp-dead2  (10 B)", ".merged.tmp-prev.old  put back as " + out}
	if !slices.Equal(got, want) {
		t.Errorf("removed %q, want %q", got, want)
	}
	names := listDir(t, dir)
	if !slices.Contains(names, filepath.Base(live.tmp)) || !slices.Contains(names, ".other.tmp-dead3") || !slices.Contains(names, ".merged.tmp-NOT_OURS") {
		t.Errorf("removed more than the stale temporaries: %v", names)
	}
	if b, err := os.ReadFile(filepath.Join(out, "config.json")); err != nil || string(b) != "{}" {
		t.Errorf("previous output not restored: %q, %v", b, err)
	}
}

// TestRemoveTemporaries: what a signal handler calls removes the partial
// outputs in progress, and the writers' next operations fail.
func TestRemoveTemporaries(t *testing.T) {
	defer func() { // let the package's later tests write again
		temps.gate.Lock()
		temps.closed = false
		temps.gate.Unlock()
	}()
	dir := t.TempDir()
	specs := []TensorSpec{{Name: "a", DType: F32, Shape: []int64{4}}, {Name: "b", DType: F32, Shape: []int64{4}}}
	w, err := Create(filepath.Join(dir, "m"), specs, WriteOptions{ShardSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("a", []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	f, err := CreateFile(filepath.Join(dir, "t.md"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("partial")
	removed := RemoveTemporaries()
	if len(removed) != 2 || removed[0].Bytes == 0 {
		t.Errorf("removed %v, want the checkpoint's and the file's temporaries", removed)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("left %v", names)
	}
	if err := w.WriteFloat32("b", []float32{1, 2, 3, 4}); err == nil {
		t.Error("the writer went on after RemoveTemporaries")
	}
	if err := f.Commit(); err == nil {
		t.Error("the file was committed after RemoveTemporaries")
	}
	if _, err := Create(filepath.Join(dir, "n"), specs, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("Create after RemoveTemporaries: %v", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("left %v", names)
	}
}

// TestWriteFiles: the files of a set appear together, and a failure on any
// of them leaves none of them and no temporary.
func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	if err := WriteFiles([]string{a, b}, [][]byte{[]byte("json"), []byte("png")}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{a: "json", b: "png"} {
		if got, _ := os.ReadFile(p); string(got) != want {
			t.Errorf("%s holds %q, want %q", p, got, want)
		}
	}
	blocker := writeBytes(t, dir, "file", []byte("x"))
	for _, tc := range []struct {
		name   string
		second string
	}{
		{"the second cannot be created", filepath.Join(blocker, "r.png")},
		{"the second exists", b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := filepath.Join(dir, "new.json")
			err := WriteFiles([]string{first, tc.second}, [][]byte{[]byte("1"), []byte("2")}, WriteOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(first); err == nil {
				t.Errorf("%s was left behind (%v)", first, err)
			}
			if got := listDir(t, dir); !slices.Equal(got, []string{"file", "r.json", "r.png"}) {
				t.Errorf("the folder holds %v", got)
			}
		})
	}
}
