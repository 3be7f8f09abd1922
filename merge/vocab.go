package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/editkit/editkit/checkpoint"
)

// Vocabulary alignment, as mergekit's tokenizer_source and tokenizer
// options do it (mergekit/tokenizer/build.py and embed.py):
//
//   - the output vocabulary is the base model's (tokenizer_source: base), a
//     model's (tokenizer_source: PATH) or their union (union): the base's
//     tokens keep their ids and every other model's tokens are appended,
//     first the ordinary ones (model by model, in id order; mergekit takes
//     them in the hash order of the tokenizer's vocabulary), then the added
//     (special) ones; tokenizer.tokens names more;
//   - the base's tokens with ids at or above its config.json vocab_size are
//     dropped (they have no embedding row);
//   - every embedding matrix (2-D tensors outside the layers whose rows are
//     the vocabulary: embed_tokens, lm_head) of every model is rebuilt in
//     the output's token order: a model's own row where it has the token;
//     otherwise the row of the one model that has it, the base's row when
//     the base has it, the mean of the rows of the models that have it, or
//     zeros when none does; tokenizer.tokens overrides these per token;
//   - pad_to_multiple_of pads the rows with the mean embedding.
//
// The merge then runs on the rebuilt matrices. They are written to a
// temporary file beside the output and read from there, so the merge still
// streams tensor by tensor.

// vocab is a model's tokenizer vocabulary.
type vocab struct {
	dir     string
	file    map[string]json.RawMessage // tokenizer.json, top level
	ids     map[string]int             // every token, with the added ones
	tokens  []string                   // by id ("" for holes)
	added   map[string]json.RawMessage // added_tokens entries by content
	addedID map[int]bool
	// size is config.json's vocab_size: the embedding's rows.
	size int
}

type addedToken struct {
	ID      int    `json:"id"`
	Content string `json:"content"`
}

func readVocab(dir string) (*vocab, error) {
	path := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no tokenizer.json: aligning vocabularies reads Hugging Face (fast) tokenizer files", dir)
	}
	if err != nil {
		return nil, err
	}
	v := &vocab{dir: dir, ids: map[string]int{}, added: map[string]json.RawMessage{}, addedID: map[int]bool{}}
	if err := json.Unmarshal(data, &v.file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var model struct {
		Vocab json.RawMessage `json:"vocab"`
	}
	if err := json.Unmarshal(v.file["model"], &model); err != nil {
		return nil, fmt.Errorf("%s: model: %w", path, err)
	}
	var byName map[string]int
	var list [][]json.RawMessage
	switch {
	case json.Unmarshal(model.Vocab, &byName) == nil:
		for t, id := range byName {
			v.ids[t] = id
		}
	case json.Unmarshal(model.Vocab, &list) == nil: // Unigram: [[piece, score], ...]
		for id, e := range list {
			var t string
			if len(e) == 0 || json.Unmarshal(e[0], &t) != nil {
				return nil, fmt.Errorf("%s: model.vocab entry %d is not [piece, score]", path, id)
			}
			v.ids[t] = id
		}
	default:
		return nil, fmt.Errorf("%s: model.vocab is neither a token→id map nor a [piece, score] list", path)
	}
	var added []json.RawMessage
	if raw := v.file["added_tokens"]; len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &added); err != nil {
			return nil, fmt.Errorf("%s: added_tokens: %w", path, err)
		}
	}
	for _, a := range added {
		var at addedToken
		if err := json.Unmarshal(a, &at); err != nil {
			return nil, fmt.Errorf("%s: added_tokens: %w", path, err)
		}
		v.ids[at.Content] = at.ID
		v.added[at.Content] = a
		v.addedID[at.ID] = true
	}
	v.index()
	v.size = len(v.tokens)
	if cfg, err := checkpoint.ReadSideFile(filepath.Join(dir, "config.json")); err == nil {
		var c struct {
			VocabSize *int `json:"vocab_size"`
		}
		if json.Unmarshal(cfg, &c) == nil && c.VocabSize != nil {
			v.size = *c.VocabSize
		}
	}
	return v, nil
}

// clone copies the vocabulary so that the output's can grow.
func (v *vocab) clone() *vocab {
	c := *v
	c.file = maps.Clone(v.file)
	c.ids = maps.Clone(v.ids)
	c.added = maps.Clone(v.added)
	c.addedID = maps.Clone(v.addedID)
	c.tokens = slices.Clone(v.tokens)
	return &c
}

// index rebuilds tokens from ids.
func (v *vocab) index() {
	n := 0
	for _, id := range v.ids {
		n = max(n, id+1)
	}
	v.tokens = make([]string, n)
	for t, id := range v.ids {
		v.tokens[id] = t
	}
}

// strip drops the tokens with ids at or above the embedding's rows (a BPE
// tokenizer's vocabulary, merges and added tokens), as mergekit's
// get_stripped_tokenizer does for the base.
func (v *vocab) strip() error {
	if len(v.tokens) <= v.size {
		return nil
	}
	var model map[string]json.RawMessage
	if err := json.Unmarshal(v.file["model"], &model); err != nil {
		return err
	}
	var typ string
	json.Unmarshal(model["type"], &typ)
	if typ != "BPE" {
		return fmt.Errorf("%s: the tokenizer has %d tokens for %d embedding rows, and only a BPE tokenizer can be cut down (this one is %q)", v.dir, len(v.tokens), v.size, typ)
	}
	removed := map[string]bool{}
	for t, id := range v.ids {
		if id >= v.size {
			removed[t] = true
			delete(v.ids, t)
			delete(v.added, t)
			delete(v.addedID, id)
		}
	}
	var vocabMap map[string]int
	json.Unmarshal(model["vocab"], &vocabMap)
	for t := range removed {
		delete(vocabMap, t)
	}
	model["vocab"], _ = json.Marshal(vocabMap)
	var merges []json.RawMessage
	json.Unmarshal(model["merges"], &merges)
	kept := merges[:0]
	for _, m := range merges {
		var pair []string
		var s string
		if json.Unmarshal(m, &s) == nil {
			pair = strings.SplitN(s, " ", 2)
		} else {
			json.Unmarshal(m, &pair)
		}
		if !slices.ContainsFunc(pair, func(t string) bool { return removed[t] }) {
			kept = append(kept, m)
		}
	}
	model["merges"], _ = json.Marshal(kept)
	v.file["model"], _ = json.Marshal(model)
	v.index()
	v.file["added_tokens"], _ = json.Marshal(v.addedList())
	return nil
}

func (v *vocab) addedList() []json.RawMessage {
	var ids []int
	byID := map[int]json.RawMessage{}
	for t, raw := range v.added {
		ids = append(ids, v.ids[t])
		byID[v.ids[t]] = raw
	}
	slices.Sort(ids)
	out := make([]json.RawMessage, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out
}

// outVocab is the output's vocabulary and each model's row for each of its
// tokens (−1: the model lacks it).
type outVocab struct {
	tok   *vocab
	perms map[string][]int
	// newAdded are the tokens appended to the base's tokenizer, in order,
	// with their added_tokens entries.
	newAdded []json.RawMessage
}

// alignVocab rebuilds the embeddings of every model in the output's token
// order and the output's tokenizer files, when the configuration asks for
// a tokenizer source, and applies chat_template.
func (plan *YAMLPlan) alignVocab(prep *Prepared, g *composition, opened map[string]*checkpoint.Checkpoint, out string) error {
	if plan.Tokenizer == nil {
		return plan.chatTemplate(prep, opened)
	}
	models := plan.referenced()
	base := plan.Base
	if base == "" {
		base = models[0]
	}
	vocabs := map[string]*vocab{}
	for _, m := range models {
		v, err := readVocab(opened[m].Dir)
		if err != nil {
			return fmt.Errorf("%s: model %q: %w", plan.File, m, err)
		}
		vocabs[m] = v
	}
	if err := vocabs[base].strip(); err != nil {
		return fmt.Errorf("%s: base %q: %w", plan.File, base, err)
	}
	ov, err := plan.buildVocab(vocabs, base, models, opened)
	if err != nil {
		return err
	}
	rows := len(ov.tok.tokens)
	if m := plan.Tokenizer.PadToMultipleOf; m > 0 && rows%m != 0 {
		rows += m - rows%m
	}
	prep.vocabSize = rows
	if err := plan.tokenizerFiles(prep, ov, opened, base); err != nil {
		return err
	}
	return plan.permuteEmbeddings(prep, g, ov, vocabs, opened, base, rows, out)
}

// referenced lists every model the configuration names, base first.
func (plan *YAMLPlan) referenced() []string {
	var out []string
	add := func(m string) {
		if m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	add(plan.Base)
	for _, sl := range plan.Slices {
		for _, s := range sl.Sources {
			add(s.Model)
		}
	}
	return out
}

// buildVocab builds the output vocabulary and the permutations.
func (plan *YAMLPlan) buildVocab(vocabs map[string]*vocab, base string, models []string, opened map[string]*checkpoint.Checkpoint) (*outVocab, error) {
	ov := &outVocab{perms: map[string][]int{}}
	src := plan.Tokenizer.Source
	switch src {
	case "base":
		ov.tok = vocabs[base].clone()
	case "union":
		ov.tok = vocabs[base].clone()
		appendTok := func(t string, entry json.RawMessage) {
			if _, ok := ov.tok.ids[t]; ok {
				return
			}
			id := len(ov.tok.tokens)
			ov.tok.ids[t] = id
			ov.tok.tokens = append(ov.tok.tokens, t)
			ov.newAdded = append(ov.newAdded, withID(entry, t, id))
		}
		var plain []string
		var added []json.RawMessage
		var addedNames []string
		for _, m := range models {
			v := vocabs[m]
			for id, t := range v.tokens {
				if t == "" || id >= v.size {
					continue
				}
				if raw, ok := v.added[t]; ok {
					if !slices.Contains(addedNames, t) {
						addedNames = append(addedNames, t)
						added = append(added, raw)
					}
					continue
				}
				if !slices.Contains(plain, t) {
					plain = append(plain, t)
				}
			}
		}
		for _, t := range plain {
			if !slices.Contains(addedNames, t) {
				appendTok(t, nil)
			}
		}
		for i, t := range addedNames {
			appendTok(t, added[i])
		}
	default:
		c := opened[src]
		if c == nil {
			var err error
			if c, err = checkpoint.Open(src); err != nil {
				return nil, fmt.Errorf("%s: tokenizer source %q: %w", plan.File, src, err)
			}
			defer c.Close()
		}
		v, err := readVocab(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: tokenizer source %q: %w", plan.File, src, err)
		}
		ov.tok = v
	}
	for t := range plan.Tokenizer.Tokens {
		if _, ok := ov.tok.ids[t]; !ok {
			id := len(ov.tok.tokens)
			ov.tok.ids[t] = id
			ov.tok.tokens = append(ov.tok.tokens, t)
			ov.newAdded = append(ov.newAdded, withID(nil, t, id))
		}
	}
	for _, m := range models {
		v := vocabs[m]
		p := make([]int, len(ov.tok.tokens))
		for id, t := range ov.tok.tokens {
			p[id] = -1
			if orig, ok := v.ids[t]; ok && orig < v.size {
				p[id] = orig
			}
		}
		ov.perms[m] = p
	}
	return ov, nil
}

// withID returns an added_tokens entry for token t with the new id: the
// source model's entry when given, else a plain (non-special) one.
func withID(entry json.RawMessage, t string, id int) json.RawMessage {
	m := map[string]any{"content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}
	if entry != nil {
		json.Unmarshal(entry, &m)
	}
	m["id"] = id
	out, _ := json.Marshal(m)
	return out
}

// tokenizerFiles writes the output's tokenizer files.
func (plan *YAMLPlan) tokenizerFiles(prep *Prepared, ov *outVocab, opened map[string]*checkpoint.Checkpoint, base string) error {
	src := plan.Tokenizer.Source
	dir := opened[base].Dir
	if src != "base" && src != "union" {
		if c := opened[src]; c != nil {
			dir = c.Dir
		} else {
			dir = src
			if st, err := os.Stat(src); err == nil && !st.IsDir() {
				dir = filepath.Dir(src)
			}
		}
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt"} {
			if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				prep.SideFiles[name] = data
			}
		}
		return plan.chatTemplate(prep, opened)
	}
	t := ov.tok
	added := t.addedList()
	added = append(added, ov.newAdded...)
	t.file["added_tokens"], _ = json.Marshal(added)
	data, err := marshalIndent(t.file)
	if err != nil {
		return err
	}
	prep.SideFiles["tokenizer.json"] = data
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	if raw, err := os.ReadFile(cfgPath); err == nil {
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("%s: %w", cfgPath, err)
		}
		dec, _ := cfg["added_tokens_decoder"].(map[string]any)
		if dec != nil {
			for id := range dec {
				var n int
				if _, err := fmt.Sscan(id, &n); err == nil && n >= len(t.tokens) {
					delete(dec, id)
				}
			}
			for _, a := range ov.newAdded {
				var e map[string]any
				json.Unmarshal(a, &e)
				id := fmt.Sprint(e["id"])
				delete(e, "id")
				dec[id] = e
			}
		}
		data, err := marshalIndent(cfg)
		if err != nil {
			return err
		}
		prep.SideFiles["tokenizer_config.json"] = data
	}
	return plan.chatTemplate(prep, opened)
}

// chatTemplate sets chat_template in the output's tokenizer_config.json:
// the template given, or with "auto" the one most of the models use.
func (plan *YAMLPlan) chatTemplate(prep *Prepared, opened map[string]*checkpoint.Checkpoint) error {
	if plan.ChatTemplate == "" {
		return nil
	}
	tmpl := plan.ChatTemplate
	if tmpl == "auto" {
		counts := map[string]int{}
		best := ""
		for _, m := range plan.referenced() {
			raw, err := checkpoint.ReadSideFile(filepath.Join(opened[m].Dir, "tokenizer_config.json"))
			if err != nil {
				continue
			}
			var cfg struct {
				ChatTemplate any `json:"chat_template"`
			}
			json.Unmarshal(raw, &cfg)
			s, _ := cfg.ChatTemplate.(string)
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			counts[s]++
			if counts[s] > counts[best] {
				best = s
			}
		}
		if best == "" {
			return nil // none of the models has one: mergekit sets none either
		}
		tmpl = best
	}
	raw, ok := prep.SideFiles["tokenizer_config.json"]
	if !ok {
		donor := plan.Base
		if donor == "" {
			donor = plan.referenced()[0]
		}
		var err error
		if raw, err = checkpoint.ReadSideFile(filepath.Join(opened[donor].Dir, "tokenizer_config.json")); err != nil {
			return fmt.Errorf("%s: chat_template: the output's tokenizer has no tokenizer_config.json to hold it: %w", plan.File, err)
		}
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: tokenizer_config.json: %w", plan.File, err)
	}
	cfg["chat_template"] = tmpl
	data, err := marshalIndent(cfg)
	if err != nil {
		return err
	}
	prep.SideFiles["tokenizer_config.json"] = data
	return nil
}

func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// permuteEmbeddings rebuilds every embedding matrix of every model in the
// output's token order, into a temporary file the composition then reads.
func (plan *YAMLPlan) permuteEmbeddings(prep *Prepared, g *composition, ov *outVocab, vocabs map[string]*vocab, opened map[string]*checkpoint.Checkpoint, base string, rows int, out string) error {
	type embed struct {
		index int // in g.names
		cols  int64
	}
	var embeds []embed
	// The models whose rows an embedding is rebuilt from: the slice's
	// members and the base.
	modelOf := func(p checkpoint.Part) string {
		for m, c := range opened {
			if c == p.From {
				return m
			}
		}
		return ""
	}
	isEmbed := func(p checkpoint.Part) (int64, bool) {
		t, _ := p.From.Tensor(p.Tensor)
		v := vocabs[modelOf(p)]
		if len(t.Shape) != 2 || !checkpoint.IsFloat(t.DType) || v == nil {
			return 0, false
		}
		return t.Shape[1], int(t.Shape[0]) == v.size
	}
	for i := range g.names {
		if cols, ok := isEmbed(g.base[i]); ok {
			embeds = append(embeds, embed{i, cols})
		}
	}
	if len(embeds) == 0 {
		return fmt.Errorf("%s: no embedding matrix (a 2-D tensor with config.json's vocab_size rows) to align to the new vocabulary", plan.File)
	}
	dir, remove, err := checkpoint.TempBeside(out)
	if err != nil {
		return fmt.Errorf("the aligned embeddings: %w", err)
	}
	prep.closers = append(prep.closers, func() error { remove(); return nil })
	var specs []checkpoint.TensorSpec
	type job struct {
		embed
		models []string
		name   map[string]string // model → tensor name in the temp file
	}
	var jobs []job
	for _, e := range embeds {
		j := job{embed: e, name: map[string]string{}}
		parts := []checkpoint.Part{g.base[e.index]}
		for _, m := range g.members {
			parts = append(parts, m[e.index])
		}
		for _, p := range parts {
			m := modelOf(p)
			if m == "" || j.name[m] != "" {
				continue
			}
			j.models = append(j.models, m)
			j.name[m] = fmt.Sprintf("%d.%s", len(specs), g.names[e.index])
			specs = append(specs, checkpoint.TensorSpec{Name: j.name[m], DType: checkpoint.F32, Shape: []int64{int64(rows), e.cols}})
		}
		if plan.Base != "" && j.name[base] == "" {
			// The base's rows choose tokens' sources even where it is not a
			// member of the merge.
			j.models = append(j.models, base)
		}
		jobs = append(jobs, j)
	}
	path := filepath.Join(dir, "embeddings.safetensors")
	// The inputs' own values, checked when the merge reads them back.
	w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{AllowNonfinite: true})
	if err != nil {
		return err
	}
	defer w.Abort()
	for _, j := range jobs {
		tensors := map[string][]float32{}
		for _, m := range j.models {
			c := opened[m]
			name := g.names[j.index]
			for _, p := range append([]checkpoint.Part{g.base[j.index]}, memberParts(g, j.index)...) {
				if modelOf(p) == m {
					name = p.Tensor
				}
			}
			v, _, err := c.ReadFloat32(name, nil, nil)
			if err != nil {
				return err
			}
			tensors[m] = v
		}
		rebuilt, err := rebuildEmbeddings(ov, tensors, j.models, base, plan.Base != "", plan.Tokenizer.Tokens, vocabs, int(j.cols), rows)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", plan.File, g.names[j.index], err)
		}
		for _, m := range j.models {
			if j.name[m] == "" {
				continue
			}
			if err := w.WriteFloat32(j.name[m], rebuilt[m]); err != nil {
				return err
			}
		}
	}
	if err := w.Commit(); err != nil {
		return err
	}
	tmp, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	prep.closers = append(prep.closers, tmp.Close)
	for _, j := range jobs {
		swap := func(p *checkpoint.Part) {
			if m := modelOf(*p); m != "" && j.name[m] != "" {
				p.From, p.Tensor = tmp, j.name[m]
			}
		}
		swap(&g.base[j.index])
		for k := range g.members {
			swap(&g.members[k][j.index])
		}
	}
	g.identity = false
	return nil
}

func memberParts(g *composition, i int) []checkpoint.Part {
	out := make([]checkpoint.Part, len(g.members))
	for k := range g.members {
		out[k] = g.members[k][i]
	}
	return out
}

// rebuildEmbeddings lays each model's embedding rows out in the output's
// token order (mergekit's PermutedEmbeddings).
func rebuildEmbeddings(ov *outVocab, tensors map[string][]float32, models []string, base string, hasBase bool, cfgTokens map[string]TokenEmbedding, vocabs map[string]*vocab, cols, rows int) (map[string][]float32, error) {
	vocabLen := len(ov.tok.tokens)
	row := func(m string, r int) []float32 { return tensors[m][r*cols : (r+1)*cols] }
	defaults := make(map[int][]float64)
	force := map[int]bool{}
	for id, t := range ov.tok.tokens {
		if te, ok := cfgTokens[t]; ok {
			force[id] = te.Force
			e := make([]float64, cols)
			switch te.Kind {
			case "zero":
			case "model":
				r := ov.perms[te.Model][id]
				if r < 0 {
					return nil, fmt.Errorf("token %q: model %q has no such token", t, te.Model)
				}
				copy64(e, row(te.Model, r))
			case "model_token":
				r := te.TokenID
				if te.Token != "" {
					var ok bool
					if r, ok = vocabs[te.Model].ids[te.Token]; !ok {
						return nil, fmt.Errorf("token %q: model %q has no token %q", t, te.Model, te.Token)
					}
				}
				if r < 0 || (r+1)*cols > len(tensors[te.Model]) {
					return nil, fmt.Errorf("token %q: token id %d is out of range for model %q", t, r, te.Model)
				}
				copy64(e, row(te.Model, r))
			}
			defaults[id] = e
			continue
		}
		var have []string
		for _, m := range models {
			if ov.perms[m][id] >= 0 {
				have = append(have, m)
			}
		}
		e := make([]float64, cols)
		switch {
		case len(have) == 1:
			copy64(e, row(have[0], ov.perms[have[0]][id]))
		case len(have) == 0:
		case hasBase && ov.perms[base][id] >= 0:
			copy64(e, row(base, ov.perms[base][id]))
		default:
			for _, m := range have {
				for k, v := range row(m, ov.perms[m][id]) {
					e[k] += float64(v)
				}
			}
			for k := range e {
				e[k] /= float64(len(have))
			}
		}
		defaults[id] = e
	}
	out := map[string][]float32{}
	for _, m := range models {
		dst := make([]float32, rows*cols)
		for id := range vocabLen {
			d := dst[id*cols : (id+1)*cols]
			if r := ov.perms[m][id]; r >= 0 && !force[id] {
				copy(d, row(m, r))
				continue
			}
			for k, v := range defaults[id] {
				d[k] = float32(v)
			}
		}
		if rows > vocabLen {
			mean := make([]float64, cols)
			for id := range vocabLen {
				for k, v := range dst[id*cols : (id+1)*cols] {
					mean[k] += float64(v)
				}
			}
			for r := vocabLen; r < rows; r++ {
				for k := range mean {
					dst[r*cols+k] = float32(mean[k] / float64(vocabLen))
				}
			}
		}
		out[m] = dst
	}
	return out, nil
}

func copy64(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] = float64(v)
	}
}
