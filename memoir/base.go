package memoir

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Base is the model being edited and its tokenizer. Every method edits
// one Base and evaluates against its unedited predictions.
type Base struct {
	Model *llama.Model
	Tok   tokenizers.Tokenizer
}

// NewBase pairs a model with its tokenizer, checking that the tokenizer's
// ids fit the model's vocabulary.
func NewBase(m *llama.Model, tok tokenizers.Tokenizer) (*Base, error) {
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, fmt.Errorf("memoir: the tokenizer has %d tokens, more than the model's vocabulary of %d: give the model's own tokenizer", tok.VocabSize(), m.Config.VocabSize)
	}
	return &Base{Model: m, Tok: tok}, nil
}

// LoadBase loads a Hugging Face LLaMA-family folder and the tokenizer
// found in it (or at tokPath when not empty).
func LoadBase(dir, tokPath string) (*Base, error) {
	m, err := llama.Load(dir)
	if err != nil {
		return nil, err
	}
	if tokPath == "" {
		tokPath = dir
	}
	tok, err := tokenizers.Load(tokPath)
	if err != nil {
		return nil, err
	}
	return NewBase(m, tok)
}

// EncodePrompt returns the ids of a prompt, BOS first where the tokenizer
// has one.
func (b *Base) EncodePrompt(prompt string) ([]int, error) {
	ids := b.Tok.Encode(prompt, true, false)
	if len(ids) == 0 {
		return nil, fmt.Errorf("memoir: the prompt %q has no tokens", prompt)
	}
	if len(ids) > b.Model.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("memoir: the prompt %q has %d tokens, more than the model's %d positions", prompt, len(ids), b.Model.Config.MaxPositionEmbeddings)
	}
	return ids, nil
}

// Encode returns the ids of prompt + " " + target, as EasyEdit builds its
// teacher-forced inputs, and the number of prompt tokens: the target span
// is ids[promptLen:] (the prompt is tokenized on its own to find it, as
// EasyEdit's test_prediction_acc does).
func (b *Base) Encode(prompt, target string) (ids []int, promptLen int, err error) {
	p, err := b.EncodePrompt(prompt)
	if err != nil {
		return nil, 0, err
	}
	full := b.Tok.Encode(prompt+" "+target, true, false)
	if len(full) <= len(p) {
		return nil, 0, fmt.Errorf("memoir: %q + %q gives no target tokens after the prompt's %d", prompt, target, len(p))
	}
	if len(full) > b.Model.Config.MaxPositionEmbeddings {
		return nil, 0, fmt.Errorf("memoir: %q + %q has %d tokens, more than the model's %d positions", prompt, target, len(full), b.Model.Config.MaxPositionEmbeddings)
	}
	return full, len(p), nil
}

// padTo is the length sequences are padded to: a multiple of 8 (so few
// distinct shapes are compiled), within the model's positions.
func (b *Base) padTo(n int) int {
	return min((n+7)/8*8, b.Model.Config.MaxPositionEmbeddings)
}

// padRows pads rows on the right with token 0 to one length (causal
// attention keeps the padding from reaching the real tokens).
func (b *Base) padRows(rows ...[]int) (*tensors.Tensor, int, error) {
	n := 0
	for _, r := range rows {
		n = max(n, len(r))
	}
	n = b.padTo(n)
	padded := make([][]int, len(rows))
	for i, r := range rows {
		padded[i] = append(slices.Clone(r), make([]int, n-len(r))...)
	}
	t, err := llama.IDs(padded...)
	return t, n, err
}

// argmaxRow returns the argmax token of positions 0..n−1 of row r of
// logits [batch, seq, vocab].
func argmaxRow(logits *tensors.Tensor, r, n int) []int {
	d := logits.Shape().Dimensions
	seq, vocab := d[1], d[2]
	flat := tensors.MustCopyFlatData[float32](logits)
	out := make([]int, n)
	for t := range n {
		out[t] = eval.Argmax(flat[(r*seq+t)*vocab : (r*seq+t+1)*vocab])
	}
	return out
}

// Predict returns the unedited model's argmax token at each position of
// ids.
func (b *Base) Predict(ids []int) ([]int, error) {
	return predictWith(b, b.Model, ids)
}

// Greedy decodes n tokens after prompt with the unedited model, greedily,
// each step a forward pass over the whole sequence (as EasyEdit's
// generate(use_cache=False)).
func (b *Base) Greedy(prompt []int, n int) ([]int, error) {
	return greedyWith(b, b.Model, prompt, n, nil)
}

// greedyWith decodes n tokens after prompt with m greedily; extra, when
// set, gives the adapter's per-call inputs for a row padded to a length.
func greedyWith(b *Base, m *llama.Model, prompt []int, n int, extra func(padded int) []*tensors.Tensor) ([]int, error) {
	ids := slices.Clone(prompt)
	for range n {
		t, padded, err := b.padRows(ids)
		if err != nil {
			return nil, err
		}
		var ex []*tensors.Tensor
		if extra != nil {
			ex = extra(padded)
		}
		logits, err := m.Logits(t, ex...)
		if err != nil {
			return nil, err
		}
		ids = append(ids, argmaxRow(logits, 0, len(ids))[len(ids)-1])
	}
	return ids[len(prompt):], nil
}

func predictWith(b *Base, m *llama.Model, ids []int, extra ...*tensors.Tensor) ([]int, error) {
	t, _, err := b.padRows(ids)
	if err != nil {
		return nil, err
	}
	logits, err := m.Logits(t, extra...)
	if err != nil {
		return nil, err
	}
	return argmaxRow(logits, 0, len(ids)), nil
}

// features returns the down-projection input x of layer at every position
// of each row, [row][position][intermediate], for rows of any lengths.
func (b *Base) features(layer int, rows ...[]int) ([][][]float32, error) {
	const chunk = 16
	f := b.Model.Config.IntermediateSize
	out := make([][][]float32, 0, len(rows))
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		t, seq, err := b.padRows(part...)
		if err != nil {
			return nil, err
		}
		_, x, err := b.Model.Features(t, layer)
		if err != nil {
			return nil, err
		}
		flat := tensors.MustCopyFlatData[float32](x)
		for i, r := range part {
			pos := make([][]float32, len(r))
			for p := range pos {
				pos[p] = flat[(i*seq+p)*f : (i*seq+p+1)*f]
			}
			out = append(out, pos)
		}
	}
	return out, nil
}

// meanFeatures is the mean of the layer's down-projection input over all
// tokens of each row.
func (b *Base) meanFeatures(layer int, rows ...[]int) ([][]float32, error) {
	xs, err := b.features(layer, rows...)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(xs))
	for i, pos := range xs {
		out[i] = meanOf(pos)
	}
	return out, nil
}

// meanOf is the element-wise mean of vectors (accumulated in float64).
func meanOf(vs [][]float32) []float32 {
	if len(vs) == 0 {
		return nil
	}
	acc := make([]float64, len(vs[0]))
	for _, v := range vs {
		for j, x := range v {
			acc[j] += float64(x)
		}
	}
	out := make([]float32, len(acc))
	for j, s := range acc {
		out[j] = float32(s / float64(len(vs)))
	}
	return out
}

// modelInfo identifies the model a memory was made for: its sizes and a
// digest of the edited layer's down_proj weight.
type modelInfo struct {
	Hidden       int    `json:"hidden_size"`
	Intermediate int    `json:"intermediate_size"`
	Layers       int    `json:"num_hidden_layers"`
	Vocab        int    `json:"vocab_size"`
	DownProj     string `json:"down_proj_sha256"`
}

func (b *Base) info(layer int) modelInfo {
	c := b.Model.Config
	h := sha256.New()
	buf := make([]byte, 4)
	for _, v := range b.Model.Weights.Float32(llama.DownProjName(layer)) {
		binary.LittleEndian.PutUint32(buf, math.Float32bits(v))
		h.Write(buf)
	}
	return modelInfo{Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers, Vocab: c.VocabSize,
		DownProj: hex.EncodeToString(h.Sum(nil))[:16]}
}

// checkLayer validates an edited layer.
func (b *Base) checkLayer(layer int) error {
	if n := b.Model.Config.NumHiddenLayers; layer < 0 || layer >= n {
		return fmt.Errorf("memoir: layer %d: the model has layers 0..%d", layer, n-1)
	}
	return nil
}

// withWeights returns m's weights with some replaced (a new map; the
// tensors are shared).
func withWeights(w models.Weights, replace models.Weights) models.Weights {
	out := make(models.Weights, len(w))
	for k, v := range w {
		out[k] = v
	}
	for k, v := range replace {
		out[k] = v
	}
	return out
}

// EditsDigest is a digest of edit requests (their JSON), recorded in a
// memory so that evaluation can tell whether it is given the same edits.
func EditsDigest(edits []EditRequest) string {
	data, _ := json.Marshal(edits)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// tensorOf wraps float32 values as a tensor of the given dimensions.
func tensorOf(v []float32, dims ...int) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(slices.Clone(v), dims...)
}
