package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line in-process.
func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

// TestGenerateStories260K converts llama2.c's stories260K and generates from
// it as llama2.c's run does: greedy, 200 steps from BOS. The expected text
// is the expected_stdout literal of llama2.c's test_all.py (run.c's output
// without its final newline).
func TestGenerateStories260K(t *testing.T) {
	bin, tok := stories260K(t)
	const want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily didn't want to help her mom, so she"
	out := filepath.Join(t.TempDir(), "stories260K")
	if _, errOut, code := runCLI("-q", "convert", "llama2c", bin, "--tokenizer", tok, "-o", out); code != 0 {
		t.Fatalf("convert: %s", errOut)
	}
	stdout, stderr, code := runCLI("generate", "--model", out, "--temperature", "0", "--steps", "200")
	if code != 0 {
		t.Fatalf("generate: %s", stderr)
	}
	if stdout != want+"\n" {
		t.Errorf("generate printed %q, want %q and a newline", stdout, want)
	}
	if !strings.Contains(stderr, "achieved tok/s: ") {
		t.Errorf("no speed on stderr: %q", stderr)
	}

	// A prompt is printed with the text; --json gives the same text.
	stdout, stderr, code = runCLI("--json", "generate", "--model", out, "--prompt", "Once upon a time", "--temperature", "0.8", "--seed", "42", "--steps", "40")
	if code != 0 {
		t.Fatalf("generate --json: %s", stderr)
	}
	var res struct {
		Text      string `json:"text"`
		Tokens    []int  `json:"tokens"`
		Generated int    `json:"generated"`
		Seed      uint64 `json:"seed"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if !strings.HasPrefix(res.Text, "Once upon a time") || len(res.Tokens) != 41 || res.Seed != 42 || res.Generated == 0 {
		t.Errorf("--json result %+v", res)
	}
	stdout2, _, _ := runCLI("generate", "--model", out, "--prompt", "Once upon a time", "--temperature", "0.8", "--seed", "42", "--steps", "40")
	if stdout2 != res.Text+"\n" {
		t.Errorf("same seed, other text: %q vs %q", stdout2, res.Text)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"generate"}, "--model"},
		{[]string{"generate", "--model", out, "--temperature", "-1"}, "--temperature"},
		{[]string{"generate", "--model", out, "--top-p", "1.5"}, "--top-p"},
		{[]string{"generate", "--model", out, "--steps", "-3"}, "--steps"},
		{[]string{"generate", "--model", filepath.Join(out, "nope")}, "does not exist"},
	} {
		_, stderr, code := runCLI(tc.args...)
		if code != 1 || !strings.HasPrefix(stderr, "editkit: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("editkit %s: exit %d, stderr %q; want an error mentioning %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

// stories260K returns llama2.c's stories260K.bin and tok512.bin from
// ../shared/data/llm (or $EDITKIT_LLM_DATA), skipping the test without them.
func stories260K(t *testing.T) (bin, tok string) {
	t.Helper()
	dir := os.Getenv("EDITKIT_LLM_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "llm")
	}
	bin, tok = filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "tok512.bin")
	for _, p := range []string{bin, tok} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("skipping: %s is absent (stories260K.bin and tok512.bin live in ../shared/data/llm beside the repository, or set EDITKIT_LLM_DATA)", p)
		}
	}
	return bin, tok
}
