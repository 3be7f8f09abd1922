package memoir

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseEdits feeds arbitrary bytes to the EasyEdit reader (go test
// ./memoir -fuzz FuzzParseEdits). It must never panic; an error is a
// DataError naming the file, with a record index inside the data and a
// position inside the file; a success gives edits with a prompt and a
// target and locality prompts paired with their answers.
func FuzzParseEdits(f *testing.F) {
	for _, s := range []string{
		``, `[]`, `{}`, `[{}]`, "\ufeff[]", `null`, `[null]`, `[1, "a"]`,
		`[{"prompt": "a", "target_new": "b"}]`,
		`{"prompt": "a", "target_new": "b"}` + "\n" + `{"prompt": "c", "target_new": "d", "rephrase_prompt": ["e", "f"]}`,
		`[{"src": "a", "alt": "b", "answers": ["x"], "rephrase": "r", "loc": "nq question: q", "loc_ans": "la", "subject": "s"}]`,
		`[{"prompt": "a", "target_new": "b", "locality_prompt": ["p", "q"], "locality_ground_truth": ["x"]}]`,
		`[{"prompt": "a", "target_new": "b", "rephrase_prompt": 3}]`,
		`[{"prompt": "a", "target_new": "  "}]`,
		`[{"requested_rewrite": {}}]`,
		`[{"prompt": "a", "target_new": "b"},]`,
		`[{"prompt": "a", "target_new": "b"}] trailing`,
		"[{\"prompt\": \"a\xff\", \"target_new\": \"b\"}]",
		`[{"prompt": "a", "target_new": "b"`,
		`{"src": null, "alt": "b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		edits, format, err := ParseEdits("fuzz.json", data)
		if err != nil {
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a DataError", err, err)
			}
			if de.File != "fuzz.json" || !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error %q does not name the file", err)
			}
			if de.Line < 0 || de.Column < 0 || de.Record < -1 || de.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("error %+v points outside the data", de)
			}
			if edits != nil || format != "" {
				t.Fatalf("edits %v, format %q returned with error %v", edits, format, err)
			}
			return
		}
		if len(edits) == 0 || (format != ZsRE && format != CounterFact) {
			t.Fatalf("%d edits in format %q without an error", len(edits), format)
		}
		for i, e := range edits {
			if strings.TrimSpace(e.Prompt) == "" || strings.TrimSpace(e.Target) == "" {
				t.Fatalf("edit %d has an empty prompt or target: %+v", i, e)
			}
			for _, l := range e.Locality {
				if l.Prompt == "" && l.Answer == "" {
					t.Fatalf("edit %d: empty locality pair", i)
				}
			}
		}
	})
}
