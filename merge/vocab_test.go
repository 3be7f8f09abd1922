package merge

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// vocabModel is a tiny model with a tokenizer: an embedding and an lm_head
// whose rows follow its own token ids, and one layer tensor.
type vocabModel struct {
	tokens []string        // by id
	added  map[string]bool // added (special) tokens
	rows   map[string][]float64
	embed  map[string][][]float64 // tensor → rows by id
	layer  []float64
}

const vocabCols = 4

func (m *vocabModel) write(t *testing.T, dir string) {
	t.Helper()
	n := int64(len(m.tokens))
	specs := []checkpoint.TensorSpec{
		{Name: "model.embed_tokens.weight", DType: checkpoint.F32, Shape: []int64{n, vocabCols}},
		{Name: "model.layers.0.mlp.weight", DType: checkpoint.F32, Shape: []int64{int64(len(m.layer))}},
		{Name: "lm_head.weight", DType: checkpoint.F32, Shape: []int64{n, vocabCols}},
	}
	w, err := checkpoint.Create(dir, specs, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flat := func(rows [][]float64) []float32 {
		var out []float32
		for _, r := range rows {
			for _, v := range r {
				out = append(out, float32(v))
			}
		}
		return out
	}
	for _, s := range specs {
		var v []float32
		if s.Name == "model.layers.0.mlp.weight" {
			for _, x := range m.layer {
				v = append(v, float32(x))
			}
		} else {
			v = flat(m.embed[s.Name])
		}
		if err := w.WriteFloat32(s.Name, v); err != nil {
			t.Fatal(err)
		}
	}
	vocab := map[string]int{}
	var added []map[string]any
	for id, tok := range m.tokens {
		if m.added[tok] {
			added = append(added, map[string]any{"id": id, "content": tok, "special": true, "normalized": false, "lstrip": false, "rstrip": false, "single_word": false})
			continue
		}
		vocab[tok] = id
	}
	tj, _ := json.Marshal(map[string]any{"version": "1.0", "added_tokens": added,
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{}}})
	for name, data := range map[string][]byte{
		"tokenizer.json":        tj,
		"tokenizer_config.json": []byte(`{"added_tokens_decoder": {}, "chat_template": "{{ messages }} from ` + dir + `"}`),
		"config.json":           fmt.Appendf(nil, `{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1, "vocab_size": %d}`, n),
	} {
		if err := w.AddFile(name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// row returns the model's row of a token in a tensor, or nil.
func (m *vocabModel) row(tensor, tok string) []float64 {
	for id, t := range m.tokens {
		if t == tok {
			return m.embed[tensor][id]
		}
	}
	return nil
}

// vocabModels builds base, a (the base's vocabulary) and b (two ids swapped
// and two tokens more, one of them an added special token).
func vocabModels() (base, a, b *vocabModel) {
	r := rand.New(rand.NewPCG(4, 2))
	val := func() float64 { return float64(r.IntN(129)-64) / 64 }
	mk := func(tokens []string) *vocabModel {
		m := &vocabModel{tokens: tokens, added: map[string]bool{"<s>": true, "<x2>": true}, embed: map[string][][]float64{}}
		for _, tn := range []string{"model.embed_tokens.weight", "lm_head.weight"} {
			rows := make([][]float64, len(tokens))
			for i := range rows {
				rows[i] = make([]float64, vocabCols)
				for k := range rows[i] {
					rows[i][k] = val()
				}
			}
			m.embed[tn] = rows
		}
		m.layer = []float64{val(), val(), val()}
		return m
	}
	var toks []string
	toks = append(toks, "<s>")
	for i := 1; i < 10; i++ {
		toks = append(toks, fmt.Sprintf("t%d", i))
	}
	base = mk(toks)
	a = mk(toks)
	btoks := append([]string(nil), toks...)
	btoks[5], btoks[6] = btoks[6], btoks[5]
	btoks = append(btoks, "x1", "<x2>")
	b = mk(btoks)
	return base, a, b
}

func TestTokenizerAlignment(t *testing.T) {
	base, a, b := vocabModels()
	dir := t.TempDir()
	t.Chdir(dir)
	base.write(t, "base")
	a.write(t, "a")
	b.write(t, "b")
	const head = "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 0.5}}\n  - {model: b, parameters: {weight: 1.5}}\nparameters: {lambda: 0.8}\n"
	// mergekit's default embedding of a token a model lacks: the one
	// model that has it, else the base's row, else the mean.
	models := map[string]*vocabModel{"base": base, "a": a, "b": b}
	fill := func(tensor, tok string, m *vocabModel, forced map[string]string) []float64 {
		if src, ok := forced[tok]; ok {
			return models[src].row(tensor, tok)
		}
		if r := m.row(tensor, tok); r != nil {
			return r
		}
		var have []*vocabModel
		for _, name := range []string{"base", "a", "b"} {
			if r := models[name].row(tensor, tok); r != nil {
				have = append(have, models[name])
			}
		}
		if len(have) == 1 {
			return have[0].row(tensor, tok)
		}
		return base.row(tensor, tok)
	}
	expect := func(vocab []string, rows int, forced map[string]string) map[string][]float64 {
		want := map[string][]float64{}
		for _, tn := range []string{"model.embed_tokens.weight", "lm_head.weight"} {
			var out []float64
			perModel := map[string][][]float64{}
			for _, tok := range vocab {
				for name, m := range models {
					perModel[name] = append(perModel[name], fill(tn, tok, m, forced))
				}
			}
			for name := range models {
				for len(perModel[name]) < rows { // padding: the mean of the rows
					mean := make([]float64, vocabCols)
					for _, r := range perModel[name][:len(vocab)] {
						for k := range r {
							mean[k] += r[k] / float64(len(vocab))
						}
					}
					perModel[name] = append(perModel[name], mean)
				}
			}
			for i := range rows {
				for k := range vocabCols {
					b0 := perModel["base"][i][k]
					out = append(out, b0+0.8*(0.5*(perModel["a"][i][k]-b0)+1.5*(perModel["b"][i][k]-b0)))
				}
			}
			want[tn] = out
		}
		return want
	}
	union := append(append([]string(nil), base.tokens...), "x1", "<x2>")
	for _, tc := range []struct {
		name, extra string
		vocab       []string
		rows        int
		forced      map[string]string
	}{
		{"union", "tokenizer_source: union\n", union, 12, nil},
		{"base", "tokenizer_source: base\n", base.tokens, 10, nil},
		{"a model's", "tokenizer_source: b\n", b.tokens, 12, nil},
		{"union padded, a forced token", "tokenizer:\n  source: union\n  pad_to_multiple_of: 8\n  tokens:\n    t3: {source: a, force: true}\n", union, 16, map[string]string{"t3": "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := "out-" + strings.ReplaceAll(tc.name, " ", "-")
			plan, err := ParseMergekitYAML([]byte(head+tc.extra+"chat_template: auto\n"), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			prep, err := plan.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			wo := tasks.WriteOptions{SideFiles: prep.SideFiles}
			wo.Inputs = prep.Inputs
			_, err = Run(prep.Set, &prep.Config, out, wo, tasks.StreamOptions{})
			prep.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := expect(tc.vocab, tc.rows, tc.forced)
			c, err := checkpoint.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for tn, w := range want {
				got, _, err := c.ReadFloat32(tn, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(w) {
					t.Fatalf("%s has %d values, want %d (%d rows)", tn, len(got), len(w), tc.rows)
				}
				for i := range w {
					if math.Abs(float64(got[i])-w[i]) > 1e-5 {
						t.Fatalf("%s row %d (%q) col %d = %v, want %v", tn, i/vocabCols, tokenAt(tc.vocab, i/vocabCols), i%vocabCols, got[i], w[i])
					}
				}
			}
			// The output's tokenizer has the vocabulary, and config.json
			// its size.
			v, err := readVocab(out)
			if err != nil {
				t.Fatal(err)
			}
			for id, tok := range tc.vocab {
				if v.ids[tok] != id {
					t.Errorf("tokenizer.json: %q has id %d, want %d", tok, v.ids[tok], id)
				}
			}
			if len(v.tokens) != len(tc.vocab) || v.size != tc.rows {
				t.Errorf("tokenizer of %d tokens, config vocab_size %d; want %d and %d", len(v.tokens), v.size, len(tc.vocab), tc.rows)
			}
			if !v.addedID[len(tc.vocab)-1] && tc.name != "base" {
				t.Errorf("<x2> is not an added token of the output: %v", v.addedID)
			}
			cfg, _ := os.ReadFile(filepath.Join(out, "tokenizer_config.json"))
			if !strings.Contains(string(cfg), `"chat_template": "{{ messages }} from`) {
				t.Errorf("chat_template: auto did not pick a template: %s", cfg)
			}
		})
	}
	t.Run("mismatch without a tokenizer source", func(t *testing.T) {
		plan, err := ParseMergekitYAML([]byte(head), "c.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, err = plan.Open("mismatch")
		if err == nil || !strings.Contains(err.Error(), "tokenizer_source: union") || !strings.Contains(err.Error(), "10 rows") {
			t.Errorf("error %v does not name the rows and the option", err)
		}
	})
}

func tokenAt(vocab []string, i int) string {
	if i < len(vocab) {
		return vocab[i]
	}
	return "(padding)"
}
