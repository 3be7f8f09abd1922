package memoir

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// zsreRecord is a record of EasyEdit's zsre_mend_eval.json.
const zsreRecord = `{"subject": "Watts Humphrey", "src": "What university did Watts Humphrey attend?", "pred": "Trinity College",
 "rephrase": "What university did Watts Humphrey take part in?", "alt": "University of Michigan",
 "answers": ["Illinois Institute of Technology"], "loc": "nq question: who played desmond doss father in hacksaw ridge",
 "loc_ans": "Hugo Weaving", "cond": "Trinity College >> University of Michigan || What university did Watts Humphrey attend?"}`

var zsreWant = EditRequest{
	Prompt: "What university did Watts Humphrey attend?", Target: "University of Michigan",
	GroundTruth: "Illinois Institute of Technology",
	Rephrases:   []string{"What university did Watts Humphrey take part in?"},
	Locality:    []Locality{{"nq question: who played desmond doss father in hacksaw ridge", "Hugo Weaving"}},
	Subject:     "Watts Humphrey",
}

// cfRecord is a CounterFact-style record as EasyEdit's counterfact files
// have them.
const cfRecord = `{"case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English",
 "subject": "Danielle Darrieux", "ground_truth": "French",
 "rephrase_prompt": "Danielle Darrieux, a native", "locality_prompt": "The mother tongue of Léon Blum is",
 "locality_ground_truth": "French"}`

var cfWant = EditRequest{
	Prompt: "The mother tongue of Danielle Darrieux is", Target: "English", GroundTruth: "French",
	Rephrases: []string{"Danielle Darrieux, a native"},
	Locality:  []Locality{{"The mother tongue of Léon Blum is", "French"}},
	Subject:   "Danielle Darrieux",
}

func TestParseEdits(t *testing.T) {
	cases := []struct {
		name   string
		data   string
		format Format
		want   []EditRequest
	}{
		{"zsre array", "[" + zsreRecord + "]", ZsRE, []EditRequest{zsreWant}},
		{"zsre json lines", strings.ReplaceAll(zsreRecord, "\n", "") + "\n" + strings.ReplaceAll(zsreRecord, "\n", "") + "\n", ZsRE, []EditRequest{zsreWant, zsreWant}},
		{"counterfact array", "[\n" + cfRecord + ",\n" + cfRecord + "\n]\n", CounterFact, []EditRequest{cfWant, cfWant}},
		{"counterfact json lines", strings.ReplaceAll(cfRecord, "\n", "") + "\n\n", CounterFact, []EditRequest{cfWant}},
		{"lists", `[{"prompt": "p", "target_new": "t", "ground_truth": ["g1", "g2"], "rephrase_prompt": ["r1", "r2"],
			"locality_prompt": ["l1", "l2"], "locality_ground_truth": ["a1", "a2"]}]`, CounterFact,
			[]EditRequest{{Prompt: "p", Target: "t", GroundTruth: "g1", Rephrases: []string{"r1", "r2"}, Locality: []Locality{{"l1", "a1"}, {"l2", "a2"}}}}},
		{"only required, nulls", `[{"src": "q?", "alt": "a", "rephrase": null, "loc": null, "loc_ans": null, "subject": null}]`, ZsRE,
			[]EditRequest{{Prompt: "q?", Target: "a"}}},
		{"byte order mark and spaces", "\ufeff  \n[" + cfRecord + "]  \n", CounterFact, []EditRequest{cfWant}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, format, err := ParseEdits("edits.json", []byte(c.data))
			if err != nil {
				t.Fatal(err)
			}
			if format != c.format {
				t.Errorf("format %q, want %q", format, c.format)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseEditsErrors(t *testing.T) {
	cases := []struct {
		name string
		data string
		// want is the DataError expected (Msg: a part of it).
		want DataError
	}{
		{"invalid JSON in an array", "[\n" + cfRecord + ",\n{\"prompt\": \"x\" \"target_new\": \"y\"}\n]",
			DataError{Record: 1, Line: 6, Column: 16, Msg: "invalid JSON: invalid character '\"' after object key:value pair"}},
		{"invalid JSON in JSON Lines", `{"src": "a", "alt": "b"}` + "\n" + `{"src": "a", "alt": }` + "\n",
			DataError{Record: 1, Line: 2, Column: 21, Msg: "invalid JSON"}},
		{"missing comma", `[{"src": "a", "alt": "b"} {"src": "c", "alt": "d"}]`, DataError{Record: 1, Line: 1, Column: 27, Msg: "invalid JSON: expected comma after array element"}},
		{"truncated", `[{"src": "a", "alt": "b"}`, DataError{Record: -1, Line: 1, Column: 26, Msg: "unexpected end of file"}},
		{"missing prompt", `[{"target_new": "b"}]`, DataError{Record: 0, Line: 1, Field: "prompt", Msg: "missing required field (the prompt of a counterfact record)"}},
		{"missing target", `[{"src": "a", "alt": "b"},` + "\n" + `{"src": "a"}]`, DataError{Record: 1, Line: 2, Field: "alt", Msg: "missing required field (the new target of a zsre record)"}},
		{"null target", `[{"prompt": "a", "target_new": null}]`, DataError{Record: 0, Field: "target_new", Msg: "missing required field"}},
		{"wrong type", `[{"prompt": "a", "target_new": 3}]`, DataError{Record: 0, Field: "target_new", Msg: "expected a string, got a number"}},
		{"wrong list entry", `[{"prompt": "a", "target_new": "b", "rephrase_prompt": ["x", {}]}]`, DataError{Record: 0, Field: "rephrase_prompt", Msg: "entry 1: expected a string, got an object"}},
		{"wrong list type", `[{"src": "a", "alt": "b", "rephrase": true}]`, DataError{Record: 0, Field: "rephrase", Msg: "expected a string or a list of strings, got a boolean"}},
		{"empty target", `[{"prompt": "a", "target_new": "  "}]`, DataError{Record: 0, Field: "target_new", Msg: "the target is empty"}},
		{"empty prompt", `[{"prompt": "", "target_new": "b"}]`, DataError{Record: 0, Field: "prompt", Msg: "the prompt is empty"}},
		{"locality without answer", `[{"src": "a", "alt": "b", "loc": "q"}]`, DataError{Record: 0, Field: "loc_ans", Msg: "loc is given, so its answer is required"}},
		{"answer without locality", `[{"src": "a", "alt": "b", "loc_ans": "q"}]`, DataError{Record: 0, Field: "loc", Msg: "loc_ans is given, so its prompt is required"}},
		{"locality lengths", `[{"prompt": "a", "target_new": "b", "locality_prompt": ["x", "y"], "locality_ground_truth": ["z"]}]`, DataError{Record: 0, Field: "locality_ground_truth", Msg: "1 answers for 2 locality prompts"}},
		{"record not an object", `[{"src": "a", "alt": "b"}, "x"]`, DataError{Record: 1, Line: 1, Msg: "a record must be a JSON object, got a string"}},
		{"unknown format", `[{"question": "a", "answer": "b"}]`, DataError{Record: 0, Line: 1, Msg: "unknown format: the first record has fields [answer question]"}},
		{"rome counterfact", `[{"case_id": 0, "requested_rewrite": {}}]`, DataError{Record: 0, Line: 1, Msg: "ROME's original CounterFact format"}},
		{"empty file", " \n", DataError{Record: -1, Msg: "the file is empty"}},
		{"empty array", "[]", DataError{Record: -1, Msg: "no edit requests"}},
		{"data after the array", `[{"src": "a", "alt": "b"}] {}`, DataError{Record: -1, Line: 1, Msg: "unexpected data after the top-level array"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseEdits("edits.json", []byte(c.data))
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T), want a *DataError", err, err)
			}
			if de.File != "edits.json" || de.Record != c.want.Record || de.Field != c.want.Field ||
				(c.want.Line != 0 && de.Line != c.want.Line) || (c.want.Column != 0 && de.Column != c.want.Column) ||
				!strings.Contains(de.Msg, c.want.Msg) {
				t.Errorf("got %+v\nwant %+v", *de, c.want)
			}
			if !strings.HasPrefix(err.Error(), "edit data edits.json") {
				t.Errorf("message %q does not name the file", err)
			}
		})
	}
	// The message names everything.
	_, _, err := ParseEdits("d/zsre.json", []byte(`[{"src": "a", "alt": "b"},`+"\n"+`{"src": "a", "alt": 1}]`))
	if want := `edit data d/zsre.json: record 1 (line 2): field "alt": expected a string, got a number`; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if _, _, err := LoadEdits(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Errorf("a missing file loaded")
	}
}

func TestLoadEdits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.jsonl")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(cfRecord, "\n", "")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, f, err := LoadEdits(p)
	if err != nil || f != CounterFact || len(got) != 1 || !reflect.DeepEqual(got[0], cfWant) {
		t.Errorf("LoadEdits: %v %v %+v", err, f, got)
	}
}
