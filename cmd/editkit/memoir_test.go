package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/memoir"
)

const memoirEdits = "../../memoir/testdata/tinystories_edits.json"

// TestMemoirCLIErrors checks the errors of the memoir commands that need
// no model: malformed edit files name the file, record, line and field.
func TestMemoirCLIErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	syntax := write("syntax.json", "[\n  {\"prompt\": \"a\", \"target_new\": \"b\"},\n  {\"prompt\": \"c\" \"target_new\": \"d\"}\n]\n")
	missing := write("missing.json", `[{"prompt": "a", "target_new": "b"}, {"prompt": "c"}]`)
	badType := write("type.json", `{"src": "a", "alt": "b", "rephrase": 3}`)
	unknown := write("unknown.json", `[{"question": "a", "answer": "b"}]`)
	model := filepath.Join(dir, "no-model")
	out := filepath.Join(dir, "m.safetensors")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"memoir", "edit", "--edits", memoirEdits, "-o", out}, []string{"--model"}},
		{[]string{"memoir", "edit", "--model", model, "-o", out}, []string{"--edits"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits}, []string{"-o"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", filepath.Join(dir, "m")}, []string{".safetensors"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out, "--method", "rome"}, []string{"--method", "rome"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out, "--method", "grace", "--top-k", "3"}, []string{"MEMOIR settings"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out, "-n", "500"}, []string{"-n 500", "120 edits"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out, "--threshold", "1.5"}, []string{"--threshold", "[0, 1]", "auto"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out, "--method", "ft-l", "--threshold", "auto"}, []string{"MEMOIR settings"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", syntax, "-o", out}, []string{"syntax.json", "record 1", "line 3", "invalid JSON"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", missing, "-o", out}, []string{"missing.json", "record 1", `field "target_new"`, "missing required field"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", badType, "-o", out}, []string{"type.json", "record 0", `field "rephrase"`, "a number"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", unknown, "-o", out}, []string{"unknown format"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", filepath.Join(dir, "nope.json"), "-o", out}, []string{"nope.json"}},
		{[]string{"memoir", "edit", "--model", model, "--edits", memoirEdits, "-o", out}, []string{"does not exist"}},
		{[]string{"memoir", "eval", "--model", model, "--edits", memoirEdits}, []string{"--memory"}},
		{[]string{"memoir", "eval", "--model", model, "--edits", memoirEdits, "--memory", syntax}, []string{"syntax.json"}},
		{[]string{"memoir", "compare", "--model", model, "--edits", memoirEdits, "--methods", "memoir,rome"}, []string{"--methods", "rome"}},
	} {
		_, stderr, code := runCLI(tc.args...)
		if code != 1 || !strings.HasPrefix(stderr, "editkit: ") {
			t.Errorf("editkit %s: exit %d, stderr %q; want an error", strings.Join(tc.args, " "), code, stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("editkit %s: stderr %q does not mention %q", strings.Join(tc.args, " "), stderr, w)
			}
		}
	}
}

// TestMemoirCLI edits stories260K with MEMOIR and FT-L through the command
// line, evaluates the memories and generates with one.
func TestMemoirCLI(t *testing.T) {
	bin, tok := stories260K(t)
	tmp := t.TempDir()
	model := filepath.Join(tmp, "stories260K")
	if _, errOut, code := runCLI("-q", "convert", "llama2c", bin, "--tokenizer", tok, "-o", model); code != 0 {
		t.Fatalf("convert: %s", errOut)
	}
	mem := filepath.Join(tmp, "memoir.safetensors")
	stdout, stderr, code := runCLI("--json", "memoir", "edit", "--model", model, "--edits", memoirEdits, "-n", "1", "-o", mem)
	if code != 0 {
		t.Fatalf("memoir edit: %s", stderr)
	}
	var er struct {
		Method string  `json:"method"`
		Layer  int     `json:"layer"`
		Edits  int     `json:"edits"`
		Bytes  int64   `json:"bytes"`
		SPE    float64 `json:"seconds_per_edit"`
	}
	if err := json.Unmarshal([]byte(stdout), &er); err != nil || er.Method != "memoir" || er.Layer != 4 || er.Edits != 1 || er.Bytes == 0 || er.SPE <= 0 {
		t.Fatalf("memoir edit --json: %+v (%v)\n%s", er, err, stdout)
	}
	if _, stderr, code := runCLI("memoir", "edit", "--model", model, "--edits", memoirEdits, "-n", "1", "-o", mem); code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("memoir edit over an existing memory: exit %d, %q", code, stderr)
	}
	// --threshold auto: the memory routes with the chance-calibrated τ.
	auto := filepath.Join(tmp, "auto.safetensors")
	if _, stderr, code := runCLI("memoir", "edit", "--model", model, "--edits", memoirEdits, "-n", "1", "--threshold", "auto", "-o", auto); code != 0 {
		t.Fatalf("memoir edit --threshold auto: %s", stderr)
	}
	if info, err := memoir.ReadMemoryInfo(auto); err != nil || !strings.Contains(info.Metadata["config"], `"false_routing_rate":0.01`) {
		t.Errorf("memory of --threshold auto: config %q (%v)", info.Metadata["config"], err)
	}
	stdout, stderr, code = runCLI("memoir", "eval", "--model", model, "--edits", memoirEdits, "--memory", mem, "--per-edit")
	if code != 0 {
		t.Fatalf("memoir eval: %s", stderr)
	}
	if !strings.Contains(stdout, "| MEMOIR | 1 | 1.000 |") || !strings.Contains(stdout, `"Lily's favorite toy was a" → "kite"`) {
		t.Errorf("memoir eval printed:\n%s", stdout)
	}
	if !strings.Contains(stderr, "evaluated 1/1 edits") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	stdout, stderr, code = runCLI("--json", "memoir", "eval", "--model", model, "--edits", memoirEdits, "--memory", mem)
	if code != 0 {
		t.Fatalf("memoir eval --json: %s", stderr)
	}
	var res struct {
		Method      string  `json:"method"`
		Edits       int     `json:"edits"`
		Reliability float64 `json:"reliability"`
		Locality    float64 `json:"locality"`
		PerEdit     []any   `json:"per_edit"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Method != "memoir" || res.Edits != 1 || res.Reliability != 1 || res.Locality != 1 || len(res.PerEdit) != 1 {
		t.Errorf("memoir eval --json: %+v (%v)", res, err)
	}

	// generate --memory routes the edit prompt to the edit.
	stdout, stderr, code = runCLI("generate", "--model", model, "--memory", mem, "--prompt", "Lily's favorite toy was a", "--temperature", "0", "--steps", "20")
	if code != 0 {
		t.Fatalf("generate --memory: %s", stderr)
	}
	if !strings.HasPrefix(stdout, "Lily's favorite toy was a kite") || !strings.Contains(stderr, "routed to edit 0") {
		t.Errorf("generate --memory: %q, stderr %q", stdout, stderr)
	}
	plain, _, _ := runCLI("generate", "--model", model, "--prompt", "Lily's favorite toy was a", "--temperature", "0", "--steps", "20")
	if strings.HasPrefix(plain, "Lily's favorite toy was a kite") {
		t.Errorf("the unedited model already says %q", plain)
	}

	// FT-L: two edits, evaluated.
	ftl := filepath.Join(tmp, "ftl.safetensors")
	if _, stderr, code := runCLI("memoir", "edit", "--method", "ft-l", "--model", model, "--edits", memoirEdits, "-n", "2", "-o", ftl); code != 0 || !strings.Contains(stderr, "edit 2/2") {
		t.Fatalf("memoir edit --method ft-l: exit %d, %s", code, stderr)
	}
	stdout, stderr, code = runCLI("memoir", "eval", "--model", model, "--edits", memoirEdits, "--memory", ftl)
	if code != 0 || !strings.Contains(stdout, "| FT-L | 2 |") {
		t.Errorf("memoir eval of FT-L: exit %d, %s\n%s", code, stderr, stdout)
	}
	// A memory with other edits than the file's: a warning.
	other := filepath.Join(tmp, "other.json")
	data, err := os.ReadFile(memoirEdits)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(strings.Replace(string(data), `"kite"`, `"boat"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI("memoir", "eval", "--model", model, "--edits", other, "--memory", ftl); code != 0 || !strings.Contains(stderr, "warning") {
		t.Errorf("memoir eval with other edits: exit %d, stderr %q; want a warning", code, stderr)
	}
}
