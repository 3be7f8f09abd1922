package memoir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// EditRequest is one knowledge edit: after editing, the model should
// continue Prompt with Target, also when asked through one of the
// Rephrases, and should answer the Locality prompts as before.
type EditRequest struct {
	// Prompt is the text the edit is about, e.g. "Lily's favorite toy was a".
	Prompt string `json:"prompt"`
	// Target is the new continuation, e.g. "kite"; evaluation appends it to
	// the prompt after a space, as EasyEdit does.
	Target string `json:"target"`
	// GroundTruth is the old answer where the data has one (CounterFact's
	// ground_truth, ZsRE's first answer), else "".
	GroundTruth string `json:"ground_truth,omitempty"`
	// Rephrases are other wordings of Prompt (generalization).
	Rephrases []string `json:"rephrases,omitempty"`
	// Locality are unrelated prompts whose answers must not change.
	Locality []Locality `json:"locality,omitempty"`
	// Subject is the entity the edit is about, where the data names it.
	Subject string `json:"subject,omitempty"`
}

// Locality is an unrelated prompt and its answer.
type Locality struct {
	Prompt string `json:"prompt"`
	Answer string `json:"answer"`
}

// Format is an edit-data format.
type Format string

// The formats [ParseEdits] reads.
const (
	// ZsRE is EasyEdit's ZsRE format: src, alt, answers, rephrase, loc,
	// loc_ans, subject.
	ZsRE Format = "zsre"
	// CounterFact is EasyEdit's CounterFact-style format (also its
	// hallucination and WISE data): prompt, target_new, ground_truth,
	// rephrase_prompt, locality_prompt, locality_ground_truth, subject.
	CounterFact Format = "counterfact"
)

// fieldNames maps each format's fields onto EditRequest's.
type fieldNames struct {
	prompt, target, truth, rephrase, locPrompt, locAnswer, subject string
}

var formats = map[Format]fieldNames{
	ZsRE:        {"src", "alt", "answers", "rephrase", "loc", "loc_ans", "subject"},
	CounterFact: {"prompt", "target_new", "ground_truth", "rephrase_prompt", "locality_prompt", "locality_ground_truth", "subject"},
}

// DataError is an error in an edit-data file. Record is the 0-based index of
// the record (-1 when the error is not in one), Line and Column the
// 1-based position of the record or of the syntax error (0 when unknown),
// Field the JSON field at fault ("" when none).
type DataError struct {
	File         string
	Record       int
	Line, Column int
	Field        string
	Msg          string
}

func (e *DataError) Error() string {
	var sb strings.Builder
	sb.WriteString("edit data ")
	sb.WriteString(e.File)
	if e.Record >= 0 {
		fmt.Fprintf(&sb, ": record %d", e.Record)
	}
	if e.Line > 0 {
		if e.Column > 0 {
			fmt.Fprintf(&sb, " (line %d, column %d)", e.Line, e.Column)
		} else {
			fmt.Fprintf(&sb, " (line %d)", e.Line)
		}
	}
	if e.Field != "" {
		fmt.Fprintf(&sb, ": field %q", e.Field)
	}
	sb.WriteString(": ")
	sb.WriteString(e.Msg)
	return sb.String()
}

// LoadEdits reads an edit-data file (see [ParseEdits]).
func LoadEdits(path string) ([]EditRequest, Format, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("edit data: %w", err)
	}
	return ParseEdits(path, data)
}

// ParseEdits reads edit requests from data, a JSON array of records or JSON
// Lines (one record per line; any sequence of JSON objects is taken), in
// the ZsRE or the CounterFact-style format, whichever the first record's
// fields say (src/alt: ZsRE; prompt/target_new: CounterFact). name is the
// file name used in errors.
//
// Required in every record: the prompt and a non-empty target. Optional:
// the rephrasings (a string or a list of strings), the locality prompts
// and answers (strings, or lists of equal length), the subject and the
// ground truth (a string, or a list whose first entry is taken). null is
// taken as absent. Other fields are ignored.
func ParseEdits(name string, data []byte) ([]EditRequest, Format, error) {
	recs, err := splitRecords(name, data)
	if err != nil {
		return nil, "", err
	}
	if len(recs) == 0 {
		return nil, "", &DataError{File: name, Record: -1, Msg: "no edit requests in the file"}
	}
	format, err := detect(name, recs[0])
	if err != nil {
		return nil, "", err
	}
	out := make([]EditRequest, len(recs))
	for i, r := range recs {
		if out[i], err = parseRecord(format, r); err != nil {
			var de *DataError
			if errors.As(err, &de) {
				de.File, de.Record, de.Line = name, i, r.line
			}
			return nil, "", err
		}
	}
	return out, format, nil
}

// record is one JSON object of the file, with the line it starts on.
type record struct {
	fields map[string]json.RawMessage
	line   int
}

// splitRecords reads the file's objects, from a top-level array or a
// sequence of objects.
func splitRecords(name string, data []byte) ([]record, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte order mark
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &DataError{File: name, Record: -1, Msg: "the file is empty"}
	}
	start := int64(len(data) - len(trimmed))
	dec := json.NewDecoder(bytes.NewReader(data))
	array := trimmed[0] == '['
	if array {
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(name, data, -1, err, start)
		}
	}
	var recs []record
	for {
		if array && !dec.More() {
			break
		}
		pos := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if err == io.EOF && !array {
				break
			}
			return nil, syntaxError(name, data, len(recs), err, pos)
		}
		recStart := pos + int64(len(data[pos:])-len(bytes.TrimLeft(data[pos:], " \t\r\n,")))
		line, _ := lineCol(data, recStart)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
			return nil, &DataError{File: name, Record: len(recs), Line: line, Msg: fmt.Sprintf("a record must be a JSON object, got %s", kind(raw))}
		}
		recs = append(recs, record{fields: fields, line: line})
	}
	if array {
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(name, data, -1, err, dec.InputOffset())
		}
		var extra json.RawMessage
		if err := dec.Decode(&extra); err != io.EOF {
			line, col := lineCol(data, dec.InputOffset())
			return nil, &DataError{File: name, Record: -1, Line: line, Column: col, Msg: "unexpected data after the top-level array"}
		}
	}
	return recs, nil
}

// syntaxError turns a decoding error into a DataError with the line and
// column of the offending byte. pos is where the value began (after
// whitespace and commas); the value is decoded again from there with a
// fresh decoder, whose syntax error offsets count from pos.
func syntaxError(name string, data []byte, rec int, err error, pos int64) error {
	pos = min(max(pos, 0), int64(len(data)))
	pos += int64(len(data[pos:]) - len(bytes.TrimLeft(data[pos:], " \t\r\n,")))
	var raw json.RawMessage
	var se *json.SyntaxError
	if e := json.NewDecoder(bytes.NewReader(data[pos:])).Decode(&raw); errors.As(e, &se) {
		pos += se.Offset - 1
		err = e
	} else if errors.Is(e, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		pos, err = int64(len(data)), errors.New("unexpected end of file")
	}
	line, col := lineCol(data, pos)
	return &DataError{File: name, Record: rec, Line: line, Column: col, Msg: "invalid JSON: " + err.Error()}
}

// lineCol is the 1-based line and column (in bytes) of offset off.
func lineCol(data []byte, off int64) (int, int) {
	off = min(off, int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// detect tells the format from a record's fields.
func detect(name string, r record) (Format, error) {
	has := func(k string) bool { _, ok := r.fields[k]; return ok }
	switch {
	case has("src") || has("alt"):
		return ZsRE, nil
	case has("prompt") || has("target_new"):
		return CounterFact, nil
	case has("requested_rewrite"):
		return "", &DataError{File: name, Record: 0, Line: r.line, Msg: "this is ROME's original CounterFact format (requested_rewrite, paraphrase_prompts, neighborhood_prompts), which is not supported: use EasyEdit's flattened CounterFact (prompt, target_new, ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth, subject)"}
	}
	keys := make([]string, 0, len(r.fields))
	for k := range r.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return "", &DataError{File: name, Record: 0, Line: r.line, Msg: fmt.Sprintf("unknown format: the first record has fields %v; expected EasyEdit's ZsRE (src, alt, answers, rephrase, loc, loc_ans, subject) or CounterFact-style (prompt, target_new, ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth, subject)", keys)}
}

func parseRecord(format Format, r record) (EditRequest, error) {
	f := formats[format]
	var e EditRequest
	var err error
	if e.Prompt, err = requiredString(r, f.prompt, "prompt", format); err != nil {
		return e, err
	}
	if e.Target, err = requiredString(r, f.target, "new target", format); err != nil {
		return e, err
	}
	if strings.TrimSpace(e.Target) == "" {
		return e, &DataError{Field: f.target, Msg: "the target is empty"}
	}
	if strings.TrimSpace(e.Prompt) == "" {
		return e, &DataError{Field: f.prompt, Msg: "the prompt is empty"}
	}
	truth, err := stringList(r, f.truth)
	if err != nil {
		return e, err
	}
	if len(truth) > 0 {
		e.GroundTruth = truth[0]
	}
	if e.Rephrases, err = stringList(r, f.rephrase); err != nil {
		return e, err
	}
	if e.Subject, err = optionalString(r, f.subject); err != nil {
		return e, err
	}
	prompts, err := stringList(r, f.locPrompt)
	if err != nil {
		return e, err
	}
	answers, err := stringList(r, f.locAnswer)
	if err != nil {
		return e, err
	}
	switch {
	case len(prompts) > 0 && len(answers) == 0:
		return e, &DataError{Field: f.locAnswer, Msg: fmt.Sprintf("missing: %s is given, so its answer is required", f.locPrompt)}
	case len(answers) > 0 && len(prompts) == 0:
		return e, &DataError{Field: f.locPrompt, Msg: fmt.Sprintf("missing: %s is given, so its prompt is required", f.locAnswer)}
	case len(prompts) != len(answers):
		return e, &DataError{Field: f.locAnswer, Msg: fmt.Sprintf("%d answers for %d locality prompts", len(answers), len(prompts))}
	}
	for i := range prompts {
		e.Locality = append(e.Locality, Locality{Prompt: prompts[i], Answer: answers[i]})
	}
	return e, nil
}

// present returns a field's raw value, or false when it is absent or null.
func present(r record, field string) (json.RawMessage, bool) {
	v, ok := r.fields[field]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

func requiredString(r record, field, role string, format Format) (string, error) {
	if _, ok := present(r, field); !ok {
		return "", &DataError{Field: field, Msg: fmt.Sprintf("missing required field (the %s of a %s record)", role, format)}
	}
	return optionalString(r, field)
}

func optionalString(r record, field string) (string, error) {
	v, ok := present(r, field)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", &DataError{Field: field, Msg: fmt.Sprintf("expected a string, got %s", kind(v))}
	}
	return s, nil
}

// stringList reads a string or a list of strings.
func stringList(r record, field string) ([]string, error) {
	v, ok := present(r, field)
	if !ok {
		return nil, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return []string{s}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, &DataError{Field: field, Msg: fmt.Sprintf("expected a string or a list of strings, got %s", kind(v))}
	}
	out := make([]string, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &out[i]); err != nil {
			return nil, &DataError{Field: field, Msg: fmt.Sprintf("entry %d: expected a string, got %s", i, kind(it))}
		}
	}
	return out, nil
}

// kind names the JSON type of a value.
func kind(v json.RawMessage) string {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
