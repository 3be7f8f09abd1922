package train

import (
	"errors"
	"fmt"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// CausalLM trains a LLaMA-family model (typically llama.NewRandom) on token
// sequences with the next-token cross-entropy, as transformers'
// LlamaForCausalLM computes it with labels = input ids: position t predicts
// token t+1, and the loss is the mean over the batch's predicted tokens
// (padding counts for nothing). Every weight is trained with AdamW
// (Options: learning rate, schedule, warm-up, clipping, batch size as
// for the other trainers); weight decay applies to matrices and embeddings,
// not to the RMSNorm gains (decays, the rule of nanoGPT and open_clip).
//
// Each sequence is one training example: its first token is usually BOS (the
// caller tokenizes with it) and it may end with EOS. Sequences are not
// packed: a batch holds BatchSize of them, in an order shuffled anew each
// epoch (seeded by Options.Seed and the epoch), padded on the right to the
// batch's longest sequence rounded up to a multiple of 8 (so a few graphs
// serve every step), so that every example starts at position 0 as a
// prompt does at inference. The result's Weights are all the model's tensors
// (float32); llama.New(m.Config, res.Weights) is the trained model, and its
// Save writes a Hugging Face folder that llama.Load (and editkit generate)
// read. Progress reports the next-token accuracy of the batch as Accuracy.
func CausalLM(m *llama.Model, seqs [][]int, o Options) (*Result, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if m.Adapter != nil {
		return nil, errors.New("train: the model has an adapter attached; train the plain model (Model.Without)")
	}
	c := m.Config
	if err := checkSequences(seqs, c); err != nil {
		return nil, err
	}
	eng, err := newEngine(lmParams(c), m.Weights, causalLoss(c), o.adamW(), o.dtype)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	total := o.totalSteps(len(seqs))
	tr := newTracker(o, total)
	return runSteps(eng, newTokenLoader(seqs, c.MaxPositionEmbeddings, o, total), o, tr, total)
}

// lmParams is every weight of a LLaMA model, decayed as decays says.
func lmParams(c llama.Config) []param {
	specs := c.Specs()
	params := make([]param, len(specs))
	for i, s := range specs {
		params[i] = param{TensorSpec: s, decay: decays(s)}
	}
	return params
}

// causalLoss is the mean next-token cross-entropy (llama.Loss) of the
// batch's ids [batch, seq] against targets [batch, seq] under weights
// [batch, seq] (1 where a target exists), with the next-token accuracy over
// the same positions.
func causalLoss(c llama.Config) LossFunc {
	return func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		logits := llama.Forward(c, p, in[0], llama.Options{}).Logits
		w := graph.ConvertDType(in[2], logits.DType())
		hit := graph.ConvertDType(graph.Equal(graph.ArgMax(logits, -1, in[1].DType()), in[1]), logits.DType())
		acc := graph.Div(graph.ReduceAllSum(graph.Mul(hit, w)), graph.ReduceAllSum(w))
		return llama.Loss(logits, in[1], w), acc
	}
}

// checkSequences checks the sequences against the model.
func checkSequences(seqs [][]int, c llama.Config) error {
	if len(seqs) == 0 {
		return errors.New("train: no sequences to train on")
	}
	for i, s := range seqs {
		if len(s) < 2 {
			return fmt.Errorf("train: sequence %d has %d tokens; a sequence needs at least 2 (a token and the next to predict)", i, len(s))
		}
		if len(s) > c.MaxPositionEmbeddings {
			return fmt.Errorf("train: sequence %d has %d tokens, more than the model's %d positions (max_position_embeddings)", i, len(s), c.MaxPositionEmbeddings)
		}
		for _, id := range s {
			if id < 0 || id >= c.VocabSize {
				return fmt.Errorf("train: sequence %d has token id %d outside the model's vocabulary of %d", i, id, c.VocabSize)
			}
		}
	}
	return nil
}

// tokenBatch is one step of a causal-LM run: ids, next-token targets and
// target weights, [batch, length] each.
type tokenBatch struct {
	epoch                 int
	ids, targets, weights *tensors.Tensor
	err                   error
}

func (b *tokenBatch) free() {
	for _, t := range []*tensors.Tensor{b.ids, b.targets, b.weights} {
		if t != nil {
			t.FinalizeAll()
		}
	}
}

func (b *tokenBatch) failed() error { return b.err }
func (b *tokenBatch) epochOf() int  { return b.epoch }
func (b *tokenBatch) inputs() []any { return []any{b.ids, b.targets, b.weights} }

// tokenRows makes the tensors of a batch of sequences padded to length:
// ids, targets (ids shifted left by one) and weights (1 where a target
// exists).
func tokenRows(rows [][]int, length int) (ids, targets, weights *tensors.Tensor) {
	n := len(rows)
	idv, tgt, w := make([]int32, n*length), make([]int32, n*length), make([]float32, n*length)
	for i, s := range rows {
		for t, id := range s {
			idv[i*length+t] = int32(id)
			if t+1 < len(s) {
				tgt[i*length+t] = int32(s[t+1])
				w[i*length+t] = 1
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(idv, n, length),
		tensors.FromFlatDataAndDimensions(tgt, n, length),
		tensors.FromFlatDataAndDimensions(w, n, length)
}

// newTokenLoader yields the batches of a run of steps steps over seqs,
// epoch after epoch, each in the order epochBatches gives, each padded to
// its longest sequence rounded up to a multiple of 8 (at most limit).
func newTokenLoader(seqs [][]int, limit int, o Options, steps int) *prefetcher[*tokenBatch] {
	return prefetch(func(send func(*tokenBatch) bool) {
		done := 0
		for epoch := 0; done < steps; epoch++ {
			for _, idx := range epochBatches([]int{len(seqs)}, o.BatchSize, o.Seed, epoch, false) {
				if done >= steps {
					return
				}
				rows := make([][]int, len(idx))
				length := 0
				for k, e := range idx {
					rows[k] = seqs[e.i]
					length = max(length, len(rows[k]))
				}
				length = min((length+7)/8*8, limit)
				b := &tokenBatch{epoch: epoch}
				b.ids, b.targets, b.weights = tokenRows(rows, length)
				if !send(b) {
					return
				}
				done++
			}
		}
	})
}
