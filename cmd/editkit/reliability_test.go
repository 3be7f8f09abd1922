package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/merge"
)

// The tests of this file walk the command tree: a new command or flag is
// checked by them without being listed here, and one that escapes the
// guard fails them.

// notPaths are the string flags that do not name files, by name.
var notPaths = map[string]string{
	"method": "a method name", "methods": "method names", "weights": "numbers", "density": "numbers",
	"tall-lambda": "numbers", "consensus-base": "a keyword", "ties-scope": "a keyword", "ties-aggregate": "a keyword",
	"layer-pattern": "a regular expression", "dtype": "a dtype", "shard-size": "a size", "lambda": "numbers (apply)",
	"split": "a split name", "finetuned-acc": "task=accuracy pairs", "grid": "from:to:step",
	"search": "dataset=HEAD[:acc] entries; merge declares the heads as inputs and the records as outputs (derivedPaths)",
	"prompt": "text", "size": "a size", "device": "a device name",
	"trigger": "a trigger spec; an inverted:FILE is declared an input (triggerInputs)", "poison": "a trigger spec (as --trigger)",
	"from": "a keyword", "alphas": "numbers",
}

// commands lists every runnable command of the tree.
func commands() []*cobra.Command {
	a := &app{stdout: &strings.Builder{}, stderr: &strings.Builder{}}
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() {
			out = append(out, c)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(a.rootCmd())
	return out
}

// cmdArgs is a command's path as arguments: "memoir edit" → [memoir edit].
func cmdArgs(c *cobra.Command) []string {
	return strings.Fields(strings.TrimPrefix(c.CommandPath(), "editkit"))
}

// ownFlags are a command's own flags (not --json and --quiet).
func ownFlags(c *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) { out = append(out, f) })
	return out
}

func pathKind(f *pflag.Flag) string {
	if k := f.Annotations[pathKey]; len(k) > 0 {
		return k[0]
	}
	return ""
}

// TestEveryFlagIsClassified: every flag that takes text names a path of a
// declared kind or is known not to; every command that writes a file has
// --force; every float flag outside merge declares its range (merge's
// method parameters are checked by its parameter table).
func TestEveryFlagIsClassified(t *testing.T) {
	for _, c := range commands() {
		outputs := 0
		for _, f := range ownFlags(c) {
			switch f.Value.Type() {
			case "string", "stringArray", "stringSlice":
				kind := pathKind(f)
				if c.Name() == "merge" && merge.ParamByFlag(f.Name) != nil {
					continue // a merge parameter: merge.Params says what it is and checks it
				}
				if kind == "" && notPaths[f.Name] == "" {
					t.Errorf("%s --%s: say what it is: markPaths(fs, pathInput|pathDataset|pathOutput|pathRoot|pathWork, ...) if it names a file, else add it to notPaths", c.CommandPath(), f.Name)
				}
				if kind != "" && notPaths[f.Name] != "" {
					t.Errorf("%s --%s is both a path (%s) and not a path (%s)", c.CommandPath(), f.Name, kind, notPaths[f.Name])
				}
				if kind == pathOutput {
					outputs++
				}
			case "float32", "float64", "float32Slice", "float64Slice":
				if len(f.Annotations[rangeKey]) == 0 && c.Name() != "merge" {
					t.Errorf("%s --%s: declare its range with markRange", c.CommandPath(), f.Name)
				}
			}
		}
		if f := c.Flags().Lookup("force"); outputs > 0 && (f == nil || f.Value.Type() != "bool") {
			t.Errorf("%s writes files but has no --force", c.CommandPath())
		}
	}
}

// guardFixture is a folder with an input checkpoint folder "in" (contents
// that no command gets to read: the guard refuses before) and an unrelated
// existing file.
func guardFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"in/model.safetensors": "weights", "in/config.json": "{}", "exists.md": "keep me",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// treeHashes maps every file under dir (hidden ones included) to its
// content's hash.
func treeHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		if !d.Type().IsRegular() {
			out[rel] = d.Type().String() // a named pipe is not read
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hashFiles hashes the named files of dir.
func hashFiles(t *testing.T, dir string, names []string) []string {
	t.Helper()
	all := treeHashes(t, dir)
	var out []string
	for _, n := range names {
		out = append(out, all[n])
	}
	return out
}

// sameTree reports how dir differs from before: changed or new files
// (temporaries included) and removed ones.
func sameTree(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := treeHashes(t, dir)
	for p, h := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("left behind: %s", p)
		} else if b != h {
			t.Errorf("changed: %s", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("removed: %s", p)
		}
	}
}

// withArgs returns args for c with n copies of the input path, the first n
// that c's argument check accepts.
func withArgs(t *testing.T, c *cobra.Command, input string) []string {
	t.Helper()
	for n := 0; n <= 3; n++ {
		args := slices.Repeat([]string{input}, n)
		if c.ValidateArgs(args) == nil {
			return args
		}
	}
	t.Fatalf("%s accepts no list of up to 3 arguments", c.CommandPath())
	return nil
}

// wantRefused runs args in dir, expects exit status 1 and a message with
// every one of want, and checks dir is as before.
func wantRefused(t *testing.T, dir string, want []string, args ...string) {
	t.Helper()
	before := treeHashes(t, dir)
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(args...)
	os.Chdir(wd)
	if code != 1 || !strings.HasPrefix(stderr, "editkit: ") {
		t.Errorf("editkit %s: exit %d, stderr %q; want a refusal", strings.Join(args, " "), code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("editkit %s: %q does not mention %q", strings.Join(args, " "), stderr, w)
		}
	}
	sameTree(t, dir, before)
}

// TestEveryOutputIsGuarded points every output flag of every command at an
// input, at a file inside an input folder and at an existing file: each is
// refused before any work, naming the flag, and the folder is unchanged
// (no output, no temporary, inputs intact).
func TestEveryOutputIsGuarded(t *testing.T) {
	dir := guardFixture(t)
	n := 0
	for _, c := range commands() {
		var input *pflag.Flag
		var outs []*pflag.Flag
		for _, f := range ownFlags(c) {
			switch pathKind(f) {
			case pathInput:
				if input == nil {
					input = f
				}
			case pathOutput:
				outs = append(outs, f)
			}
		}
		argInputs := c.Annotations[argsKey] == pathInput
		args := cmdArgs(c)
		if argInputs {
			args = append(args, withArgs(t, c, "in")...)
		} else {
			args = append(args, withArgs(t, c, "unused")...)
			if input != nil {
				args = append(args, "--"+input.Name, "in")
			}
		}
		for _, o := range outs {
			label := flagLabel(o)
			if input != nil || argInputs {
				wantRefused(t, dir, []string{label, "in/config.json", "lies inside input in"}, append(slices.Clone(args), "--"+o.Name, "in/config.json")...)
				wantRefused(t, dir, []string{label, "is also an input"}, append(slices.Clone(args), "--"+o.Name, "in")...)
			}
			wantRefused(t, dir, []string{label, "exists.md already exists", "--force"}, append(slices.Clone(args), "--"+o.Name, "exists.md")...)
			n++
		}
	}
	if n < 15 {
		t.Errorf("only %d output flags found", n)
	}
}

// TestNamedDatasetsAreInputs: a dataset given by name is read from the
// folder --data (or $EDITKIT_DATA) holds, so that folder is an input like
// a path: an output inside it is refused, --force or not.
func TestNamedDatasetsAreInputs(t *testing.T) {
	dir := guardFixture(t)
	for name, data := range map[string]string{"data/toy/classes.txt": "a\nb\n", "data/toy/train-images-idx3-ubyte": "x", "head.safetensors": "x"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inside := []string{"data/toy/classes.txt", "lies inside input data/toy"}
	for _, args := range [][]string{
		{"eval", "--model", "in", "--dataset", "toy", "--head", "head.safetensors", "--data", "data", "--md", "data/toy/classes.txt", "--force"},
		{"finetune", "--model", "in", "--dataset", "toy", "--head", "head.safetensors", "--data", "data", "-o", "data/toy/classes.txt", "--force"},
		{"head", "probe", "--model", "in", "--dataset", "toy", "--data", "data", "-o", "data/toy/classes.txt", "--force"},
		{"merge", "--base", "in", "--models", "in", "--method", "task_arithmetic", "--search", "toy=head.safetensors",
			"--data", "data", "-o", "data/toy/classes.txt", "--force"},
	} {
		wantRefused(t, dir, inside, args...)
	}
	t.Setenv(datasets.EnvDataDir, filepath.Join(dir, "data"))
	wantRefused(t, dir, []string{"data/toy/classes.txt", "lies inside input"},
		"disentangle", "--base", "in", "--models", "in", "in", "--dataset", "toy", "--head", "head.safetensors", "--dataset", "toy", "--head", "head.safetensors", "-o", "data/toy/classes.txt.json", "--force")
}

// TestFloatFlagsChecked gives every float flag with a declared range NaN,
// ±Inf and a value outside its range: each is refused before any work,
// naming the flag.
func TestFloatFlagsChecked(t *testing.T) {
	dir := guardFixture(t)
	n := 0
	for _, c := range commands() {
		for _, f := range ownFlags(c) {
			r := f.Annotations[rangeKey]
			if len(r) == 0 {
				continue
			}
			iv, err := parseInterval(r[0])
			if err != nil {
				t.Fatalf("%s --%s: %v", c.CommandPath(), f.Name, err)
			}
			args := append(cmdArgs(c), withArgs(t, c, "in")...)
			bad := []string{"NaN", "Inf", "-Inf"}
			if iv.lo > -1e300 {
				bad = append(bad, strconv.FormatFloat(iv.lo-1, 'g', -1, 64))
			}
			if iv.hi < 1e300 {
				bad = append(bad, strconv.FormatFloat(iv.hi+1, 'g', -1, 64))
			}
			for _, v := range bad {
				x, _ := strconv.ParseFloat(v, 64)
				shown := strconv.FormatFloat(x, 'g', -1, 64) // as pflag prints it: +Inf
				if f.Value.Type() == "float32" {
					shown = strconv.FormatFloat(x, 'g', -1, 32)
				}
				wantRefused(t, dir, []string{"--" + f.Name + " " + shown + ": "}, append(slices.Clone(args), "--"+f.Name+"="+v)...)
			}
			n++
		}
	}
	if n < 8 {
		t.Errorf("only %d float flags with a range", n)
	}
}

// TestReliabilityCLI covers each class of the hostile-input report with
// real fixtures: the exit status, the message naming the flag, file or
// tensor, the inputs' bytes unchanged and nothing left behind.
func TestReliabilityCLI(t *testing.T) {
	dir := t.TempDir()
	baseModel(1).write(t, filepath.Join(dir, "base"))
	finetune(baseModel(1), 10).write(t, filepath.Join(dir, "ft1"))
	finetune(baseModel(1), 11).write(t, filepath.Join(dir, "ft2"))
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("edits.json", `[{"prompt": "a", "target_new": "b"}]`)
	write("merged.search.json", "{}")
	write("merged.search.md", "# a previous search")
	write("head.safetensors", "x")
	write("llm/config.json", "{}")
	write("llm/model.safetensors", "x")
	shard := "base/model-00001-of-00005.safetensors"
	merge := []string{"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "task_arithmetic", "--lambda", "0.5"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		// 1. Side outputs never overwrite inputs.
		{"eval --md over the model's weights", []string{"eval", "--model", "base", "--dataset", "mnist", "--head", "head.safetensors", "--md", shard},
			[]string{"--md", shard, "lies inside input base"}},
		{"eval --md over the head", []string{"eval", "--model", "base", "--dataset", "mnist", "--head", "head.safetensors", "--md", "head.safetensors"},
			[]string{"--md head.safetensors is also an input"}},
		{"memoir compare --markdown over config.json", []string{"memoir", "compare", "--model", "llm", "--edits", "edits.json", "--markdown", "llm/config.json"},
			[]string{"--markdown", "lies inside input llm"}},
		{"memoir compare --markdown over the edits", []string{"memoir", "compare", "--model", "llm", "--edits", "edits.json", "--markdown", "edits.json"},
			[]string{"--markdown edits.json is also an input"}},
		{"--save-masks inside an input", append(slices.Clone(merge), "--method", "consensus", "--save-masks", "ft1/masks.safetensors", "-o", "merged"),
			[]string{"--save-masks", "lies inside input ft1"}},
		{"--save-masks is -o", append(slices.Clone(merge), "--save-masks", "merged", "-o", "merged"),
			[]string{"-o and --save-masks are the same path"}},
		{"a previous search's record", append(slices.Clone(merge[:8]), "--search", "mnist=head.safetensors", "--search", "fashion=head.safetensors", "-o", "merged"),
			[]string{"the search record", "merged.search.json already exists", "--force"}},
		{"a search record over a head", append(slices.Clone(merge[:8]), "--search", "mnist=merged.search.md", "--search", "fashion=head.safetensors", "-o", "merged", "--force"),
			[]string{"the search record merged.search.md is also an input"}},
		// 3. Float flags: NaN, ±Inf and out of range, named at parse time.
		{"memoir --threshold NaN", []string{"memoir", "edit", "--model", "llm", "--edits", "edits.json", "-o", "m.safetensors", "--threshold", "NaN"},
			[]string{"--threshold NaN", "finite"}},
		{"memoir --threshold 2", []string{"memoir", "edit", "--model", "llm", "--edits", "edits.json", "-o", "m.safetensors", "--threshold", "2"},
			[]string{"--threshold 2", "in [0, 1]"}},
		{"generate --temperature NaN", []string{"generate", "--model", "llm", "--temperature", "NaN"}, []string{"--temperature NaN"}},
		{"generate --top-p NaN", []string{"generate", "--model", "llm", "--top-p", "NaN"}, []string{"--top-p NaN"}},
		{"generate --top-p 1.5", []string{"generate", "--model", "llm", "--top-p", "1.5"}, []string{"--top-p 1.5", "[0, 1]"}},
		{"finetune --lr Inf", []string{"finetune", "--model", "base", "--head", "head.safetensors", "--dataset", "mnist", "--steps", "1", "--lr", "Inf", "-o", "ft"}, []string{"--lr +Inf"}},
		{"finetune --lr 0", []string{"finetune", "--model", "base", "--head", "head.safetensors", "--dataset", "mnist", "--steps", "1", "--lr", "0", "-o", "ft"}, []string{"--lr 0", "> 0"}},
		{"head probe --l2 -1", []string{"head", "probe", "--model", "base", "--dataset", "mnist", "--l2", "-1", "-o", "h.safetensors"}, []string{"--l2 -1", "≥ 0"}},
		{"tv scale --by NaN", []string{"tv", "scale", "--base", "base", "ft1", "--by", "NaN", "-o", "tv.safetensors"}, []string{"--by NaN"}},
		{"merge --grid 0:Inf:0.1", append(slices.Clone(merge[:8]), "--search", "mnist=head.safetensors", "--grid", "0:Inf:0.1", "-o", "m2"),
			[]string{"--grid", "not a finite number"}},
		{"merge --grid of 10¹² points", append(slices.Clone(merge[:8]), "--search", "mnist=head.safetensors", "--grid", "0:1:1e-12", "-o", "m2"),
			[]string{"--grid", "more than 1000 points"}},
		// 6. Every output checked before the work starts.
		{"memoir edit -o inside the model folder", []string{"memoir", "edit", "--model", "llm", "--edits", "edits.json", "-o", "llm/mem.safetensors"},
			[]string{"-o llm/mem.safetensors lies inside input llm"}},
		{"finetune -o over its head", []string{"finetune", "--model", "base", "--head", "head.safetensors", "--dataset", "mnist", "--steps", "1", "-o", "head.safetensors"},
			[]string{"-o head.safetensors is also an input"}},
		{"taskvector -o inside the fine-tuned model", []string{"taskvector", "--base", "base", "--finetuned", "ft1", "-o", "ft1/tv.safetensors"},
			[]string{"-o ft1/tv.safetensors lies inside input ft1"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantRefused(t, dir, tc.want, tc.args...) })
	}
}

// TestHostileCheckpoints: a tensor name that is not UTF-8 is refused with
// its byte offset; a megabyte-long name is shortened in the message; a
// folder with both model.safetensors and an index opens model.safetensors,
// as transformers does.
func TestHostileCheckpoints(t *testing.T) {
	dir := t.TempDir()
	raw := func(header string, data int) []byte {
		b := make([]byte, 8, 8+len(header)+data)
		for i := range 8 {
			b[i] = byte(uint64(len(header)) >> (8 * i))
		}
		return append(append(b, header...), make([]byte, data)...)
	}
	badName := "{\"w\xe9ight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
	long := `{"` + strings.Repeat("x", 1<<20) + `":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`
	for name, data := range map[string][]byte{
		"bad.safetensors":  raw(badName, 4),
		"long.safetensors": raw(long, 4),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	at := 8 + strings.IndexByte(badName, 0xe9)
	wantRefused(t, dir, []string{"bad.safetensors", "not valid UTF-8", "byte " + strconv.Itoa(at) + " of the file"}, "inspect", "bad.safetensors")
	before := treeHashes(t, dir)
	wd, _ := os.Getwd()
	os.Chdir(dir)
	_, stderr, code := runCLI("inspect", "long.safetensors")
	os.Chdir(wd)
	if code != 1 || !strings.Contains(stderr, "a name of 1048576 bytes") || len(stderr) > 2000 {
		t.Errorf("a 1 MB name: exit %d, %d bytes of message: %.300q", code, len(stderr), stderr)
	}
	sameTree(t, dir, before)

	// Both model.safetensors and an index: transformers takes the single
	// file, and so does editkit.
	both := filepath.Join(dir, "both")
	baseModel(1).write(t, both) // sharded: an index and shards
	single := raw(`{"only.here":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)
	if err := os.WriteFile(filepath.Join(both, "model.safetensors"), single, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI("--json", "inspect", both)
	var rep struct {
		Tensors int `json:"tensors"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.Tensors != 1 {
		t.Errorf("inspect of a folder with both: exit %d, %s %s", code, stdout, stderr)
	}
}

// TestGenerateWarnsOfALongPrompt: a prompt longer than --steps generates
// nothing, and says so.
func TestGenerateWarnsOfALongPrompt(t *testing.T) {
	bin, tok := stories260K(t)
	model := filepath.Join(t.TempDir(), "stories260K")
	if _, errOut, code := runCLI("-q", "convert", "llama2c", bin, "--tokenizer", tok, "-o", model); code != 0 {
		t.Fatalf("convert: %s", errOut)
	}
	_, stderr, code := runCLI("generate", "--model", model, "--temperature", "0", "--steps", "3", "--prompt", "Once upon a time there was a girl")
	if code != 0 || !strings.Contains(stderr, "warning: the prompt is") || !strings.Contains(stderr, "--steps 3") || !strings.Contains(stderr, "nothing is generated") {
		t.Errorf("exit %d, stderr %q: want a warning that the prompt is longer than --steps", code, stderr)
	}
	if _, stderr, _ := runCLI("generate", "--model", model, "--temperature", "0", "--steps", "20", "--prompt", "Once"); strings.Contains(stderr, "warning") {
		t.Errorf("a short prompt warned: %q", stderr)
	}
}
