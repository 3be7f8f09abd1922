package main

import (
	"fmt"
	"slices"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// llamaConfig is the architecture of the example's model: LLaMA's (RMSNorm,
// rotary embeddings, SwiGLU MLP), tied input and output embeddings.
func (s settings) llamaConfig(vocab int) llama.Config {
	c := llama.Config{ModelType: "llama", HiddenSize: s.Hidden, IntermediateSize: s.Intermediate, NumHiddenLayers: s.Layers,
		NumAttentionHeads: s.Heads, NumKeyValueHeads: s.Heads, HeadDim: s.Hidden / s.Heads, VocabSize: vocab,
		MaxPositionEmbeddings: 256, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", TieWordEmbeddings: true,
		BOSTokenID: 1, EOSTokenIDs: []int{2}}
	return c
}

// query is a prompt and the value that should follow it.
type query struct {
	Prompt, Value string
}

// encoded is a query as token ids: the prompt's ids (BOS first) and the
// value's, as they follow the prompt (prompt + " " + value tokenized
// together, as EasyEdit builds its inputs).
type encoded struct {
	ids       []int
	promptLen int
}

func encode(tok tokenizers.Tokenizer, q query) (encoded, error) {
	p := tok.Encode(q.Prompt, true, false)
	full := tok.Encode(q.Prompt+" "+q.Value, true, false)
	if len(full) <= len(p) || !slices.Equal(full[:len(p)], p) {
		return encoded{}, fmt.Errorf("%q + %q: the value's tokens do not follow the prompt's", q.Prompt, q.Value)
	}
	return encoded{full, len(p)}, nil
}

// recall is the fraction of queries whose value the model gives exactly:
// the argmax at every value position, teacher-forced, is the value's token
// (which is also what greedy decoding of the value's length gives). Queries
// run in batches of a fixed size (the last padded with copies), so few
// graphs are compiled.
func recall(m *llama.Model, tok tokenizers.Tokenizer, qs []query) (float64, []bool, error) {
	const batch = 64
	rows := make([]encoded, len(qs))
	for i, q := range qs {
		var err error
		if rows[i], err = encode(tok, q); err != nil {
			return 0, nil, err
		}
	}
	hits := make([]bool, len(qs))
	n := 0
	for start := 0; start < len(rows); start += batch {
		part := rows[start:min(start+batch, len(rows))]
		length := 0
		for _, r := range part {
			length = max(length, len(r.ids))
		}
		length = (length + 7) / 8 * 8
		flat := make([]int32, batch*length)
		for i := range batch {
			r := part[min(i, len(part)-1)]
			for t, id := range r.ids {
				flat[i*length+t] = int32(id)
			}
		}
		logits, err := m.Logits(tensors.FromFlatDataAndDimensions(flat, batch, length))
		if err != nil {
			return 0, nil, err
		}
		pred := argmaxAll(logits)
		logits.FinalizeAll()
		for i, r := range part {
			ok := true
			for t := r.promptLen; t < len(r.ids); t++ {
				ok = ok && pred[i*length+t-1] == r.ids[t]
			}
			hits[start+i] = ok
			if ok {
				n++
			}
		}
	}
	return float64(n) / float64(len(qs)), hits, nil
}

// argmaxAll is the argmax over the last axis of logits [batch, seq, vocab],
// flattened over batch and seq.
func argmaxAll(logits *tensors.Tensor) []int {
	d := logits.Shape().Dimensions
	vocab := d[len(d)-1]
	flat := tensors.MustCopyFlatData[float32](logits)
	out := make([]int, len(flat)/vocab)
	for i := range out {
		out[i] = eval.Argmax(flat[i*vocab : (i+1)*vocab])
	}
	return out
}
