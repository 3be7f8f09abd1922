package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// DefaultTemplate is the caption of an image of class {}.
const DefaultTemplate = "a photo of a {}."

// MaxLogitScale is the clamp of logit_scale after each step: ln 100, as
// CLIP (open_clip training/train.py: logit_scale.clamp_(0, math.log(100))).
var MaxLogitScale = math.Log(100)

// Task is one labelled dataset of a contrastive run, with the captions of
// its classes.
type Task struct {
	// Data are the labelled images; each is paired with a caption of its
	// label's class. A poisoned dataset (unlearn.Poison: a share of the
	// images triggered and relabelled to a target class) thus pairs its
	// triggered images with captions of the target class, as CLIP
	// poisoning attacks do, through the same data path.
	Data *datasets.Dataset
	// Templates are caption templates in which "{}" (or "{c}") stands for
	// the class name, e.g. `a photo of the number: "{}".`; default
	// DefaultTemplate. With several, each example of each epoch draws one
	// (seeded by Options.Seed and the epoch).
	Templates []string
	// ClassNames are the names used in captions; default Data.Classes().
	ClassNames []string
}

// TokenizeFunc turns a caption into token ids: start token first, end token
// last, no padding. The end token must be the largest id of the row, where
// CLIP's text tower pools (true of CLIP's vocabulary).
type TokenizeFunc func(text string) ([]int, error)

// CLIPTokenize is t's tokenization of a caption (clip.Tokenizer.Encode
// between the start and end tokens), without padding.
func CLIPTokenize(t *clip.Tokenizer) TokenizeFunc {
	return func(text string) ([]int, error) {
		ids := append([]int{t.StartOfTextID()}, t.Encode(text)...)
		return append(ids, t.EndOfTextID()), nil
	}
}

// Caption fills a template with a class name.
func Caption(template, class string) string {
	if strings.Contains(template, "{c}") {
		return strings.ReplaceAll(template, "{c}", class)
	}
	return strings.ReplaceAll(template, "{}", class)
}

// Contrastive trains a CLIP model (both towers and logit_scale, e.g. from
// clip.NewRandom) on (image, caption) pairs from the tasks, with CLIP's
// symmetric InfoNCE loss: logits = exp(logit_scale)·cos(image_i, text_j)
// over the batch, loss = ½(CE(logits, diag) + CE(logitsᵀ, diag)). As in
// open_clip, weight decay applies to matrices and embeddings only (not to
// biases, gains, class embeddings or logit_scale, see decays), and
// logit_scale is clamped to [0, ln 100] after each step; its initial value
// is the model's (clip.NewRandom: ln(1/0.07)).
//
// Captions of one class are identical, so a batch holds duplicates; the
// loss keeps CLIP's pairing (each image's positive is its own caption).
// Identical captions have identical embeddings, so the gradient equals that
// of the multi-positive loss that counts every caption of the right class
// as positive; only the loss value carries an offset (its minimum is the
// mean of ln(duplicates) rather than 0).
//
// Examples of all tasks are shuffled together (datasets.Permutation seeded
// by Options.Seed and the epoch), unless Options.PerTaskBatches asks for
// batches that each hold one task's examples (see epochBatches); images go
// through datasets.CLIP at the model's image size. The result's Weights are all the model's tensors.
func Contrastive(m *clip.Model, tasks []Task, tok TokenizeFunc, o Options) (*Result, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Linearized {
		return nil, errors.New("train: linearized training is for fine-tuning (Finetune), not contrastive training")
	}
	c := m.Config
	if c.Vision == nil || c.Text == nil {
		return nil, errors.New("train: contrastive training needs a CLIP model with both towers")
	}
	if len(tasks) == 0 {
		return nil, errors.New("train: no datasets to train on")
	}
	caps, err := newCaptions(tasks, tok, c.Text.ContextLength, c.Text.VocabSize)
	if err != nil {
		return nil, err
	}
	specs := c.Specs()
	params := make([]param, len(specs))
	logitScale := ""
	for i, s := range specs {
		params[i] = param{TensorSpec: s, decay: decays(s)}
		if strings.Contains(s.Name, "logit_scale") && len(s.Shape) <= 1 {
			params[i].clamp = &[2]float64{0, MaxLogitScale}
			logitScale = s.Name
		}
	}
	if logitScale == "" {
		return nil, errors.New("train: the CLIP model has no logit_scale")
	}
	dt := o.dtype
	loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		img := clip.EncodeImage(c, p, pixelsIn(in[0], dt))
		txt := clip.EncodeText(c, p, in[1])
		return contrastiveLoss(clip.Logits(c, p, img, txt), in[2])
	}
	n := 0
	for _, t := range tasks {
		n += t.Data.Len()
	}
	if n == 0 {
		return nil, errors.New("train: the datasets are empty")
	}
	eng, err := newEngine(params, m.Weights, loss, o.adamW(), dt)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	total := o.totalSteps(n)
	if o.Epochs > 0 {
		sizes := make([]int, len(tasks))
		for ti, t := range tasks {
			sizes[ti] = t.Data.Len()
		}
		total = o.Epochs * contrastiveSteps(sizes, o.BatchSize, o.PerTaskBatches)
	}
	tr := newTracker(o, total)
	ld := newPairLoader(tasks, caps, datasets.CLIP(c.Vision.ImageSize), o, total)
	return runSteps(eng, ld, o, tr, total)
}

// contrastiveLoss is CLIP's symmetric InfoNCE over logits [B, B]
// (logits_per_image), and the image-to-text accuracy counting any caption
// equal to the image's own (capIDs [B] identify the captions).
func contrastiveLoss(logits, capIDs *graph.Node) (loss, acc *graph.Node) {
	g := logits.Graph()
	b := logits.Shape().Dimensions[0]
	diag := graph.Iota(g, shapes.Make(dtypes.Int32, b), 0)
	loss = graph.DivScalar(graph.Add(crossEntropy(logits, diag), crossEntropy(graph.Transpose(logits, 0, 1), diag)), 2)
	rows := graph.BroadcastToDims(graph.Reshape(capIDs, b, 1), b, b)
	cols := graph.BroadcastToDims(graph.Reshape(capIDs, 1, b), b, b)
	same := graph.ConvertDType(graph.Equal(rows, cols), logits.DType())
	pred := graph.OneHot(graph.ArgMax(logits, -1, dtypes.Int32), b, logits.DType())
	acc = graph.DivScalar(graph.ReduceAllSum(graph.Mul(pred, same)), float64(b))
	return loss, acc
}

// captions holds the token ids of every (task, class, template) caption,
// padded with zeros to one length.
type captions struct {
	length int
	ids    [][]int32      // by caption index
	index  [][][]int      // [task][class][template] → caption index
	text   map[string]int // caption text → index (identical captions share one)
}

func newCaptions(tasks []Task, tok TokenizeFunc, context, vocab int) (*captions, error) {
	if tok == nil {
		return nil, errors.New("train: no tokenizer for the captions")
	}
	cs := &captions{text: map[string]int{}}
	var rows [][]int
	for ti, t := range tasks {
		if t.Data == nil {
			return nil, fmt.Errorf("train: task %d has no dataset", ti)
		}
		names := t.ClassNames
		if names == nil {
			names = t.Data.Classes()
		}
		if len(names) != t.Data.NumClasses() {
			return nil, fmt.Errorf("train: task %s: %d class names for %d classes", t.Data.Name(), len(names), t.Data.NumClasses())
		}
		tmpls := t.Templates
		if len(tmpls) == 0 {
			tmpls = []string{DefaultTemplate}
		}
		idx := make([][]int, len(names))
		for ci, name := range names {
			for _, tmpl := range tmpls {
				text := Caption(tmpl, name)
				k, ok := cs.text[text]
				if !ok {
					ids, err := tok(text)
					if err != nil {
						return nil, fmt.Errorf("train: tokenizing %q: %w", text, err)
					}
					if len(ids) == 0 || len(ids) > context {
						return nil, fmt.Errorf("train: caption %q has %d tokens, the text tower takes 1 to %d", text, len(ids), context)
					}
					last := ids[len(ids)-1]
					for _, id := range ids {
						if id < 0 || id >= vocab {
							return nil, fmt.Errorf("train: caption %q has token id %d outside the text tower's vocabulary of %d", text, id, vocab)
						}
						if id > last {
							return nil, fmt.Errorf("train: caption %q: the last token id %d is not the largest (%d); CLIP pools at the largest id, which must be the end token", text, last, id)
						}
					}
					k = len(rows)
					cs.text[text] = k
					rows = append(rows, ids)
					cs.length = max(cs.length, len(ids))
				}
				idx[ci] = append(idx[ci], k)
			}
		}
		cs.index = append(cs.index, idx)
	}
	for _, r := range rows {
		row := make([]int32, cs.length)
		for i, id := range r {
			row[i] = int32(id)
		}
		cs.ids = append(cs.ids, row)
	}
	return cs, nil
}

// pairBatch is one step of a contrastive run.
type pairBatch struct {
	epoch             int
	pixels, ids, caps *tensors.Tensor
	err               error
}

func (b *pairBatch) free() {
	for _, t := range []*tensors.Tensor{b.pixels, b.ids, b.caps} {
		if t != nil {
			t.FinalizeAll()
		}
	}
}

func (b *pairBatch) failed() error { return b.err }
func (b *pairBatch) epochOf() int  { return b.epoch }
func (b *pairBatch) inputs() []any { return []any{b.pixels, b.ids, b.caps} }

// epochSeed mixes the seed and the epoch into the seed of the epoch's
// permutation.
func epochSeed(seed uint64, epoch int) uint64 {
	return seed ^ (uint64(epoch)+1)*0x9e3779b97f4a7c15
}

// example is one example of a contrastive run: task index and index in
// the task's dataset.
type example struct{ task, i int }

// epochBatches is the batches of one epoch over tasks of the given sizes.
// By default all examples are shuffled together (datasets.Permutation seeded
// by seed and the epoch) and cut into batches of batch (the last may be
// smaller). With perTask each task's examples are shuffled on their own
// (its own stream of the epoch's seed) and cut into batches of batch (each
// task's last may be smaller), and the order of all these batches is
// shuffled: every batch holds a single task, and tasks come in proportion
// to their sizes.
func epochBatches(sizes []int, batch int, seed uint64, epoch int, perTask bool) [][]example {
	var out [][]example
	if !perTask {
		var all []example
		for ti, n := range sizes {
			for i := range n {
				all = append(all, example{ti, i})
			}
		}
		order := datasets.Permutation(len(all), epochSeed(seed, epoch))
		for start := 0; start < len(order); start += batch {
			b := make([]example, 0, min(batch, len(order)-start))
			for _, gi := range order[start:min(start+batch, len(order))] {
				b = append(b, all[gi])
			}
			out = append(out, b)
		}
		return out
	}
	for ti, n := range sizes {
		order := datasets.Permutation(n, epochSeed(seed^(uint64(ti)+1)*0xbf58476d1ce4e5b9, epoch))
		for start := 0; start < n; start += batch {
			b := make([]example, 0, min(batch, n-start))
			for _, i := range order[start:min(start+batch, n)] {
				b = append(b, example{ti, i})
			}
			out = append(out, b)
		}
	}
	shuffled := make([][]example, len(out))
	for k, j := range datasets.Permutation(len(out), epochSeed(seed, epoch)) {
		shuffled[k] = out[j]
	}
	return shuffled
}

// contrastiveSteps is the number of batches of an epoch.
func contrastiveSteps(sizes []int, batch int, perTask bool) int {
	n, steps := 0, 0
	for _, s := range sizes {
		n += s
		steps += (s + batch - 1) / batch
	}
	if perTask {
		return steps
	}
	return (n + batch - 1) / batch
}

func newPairLoader(tasks []Task, caps *captions, pre datasets.Preprocess, o Options, steps int) *prefetcher[*pairBatch] {
	sizes := make([]int, len(tasks))
	for ti, t := range tasks {
		sizes[ti] = t.Data.Len()
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return prefetch(func(send func(*pairBatch) bool) {
		per := pre.TensorLen()
		done := 0
		for epoch := 0; done < steps; epoch++ {
			plan := epochBatches(sizes, o.BatchSize, o.Seed, epoch, o.PerTaskBatches)
			rng := rand.New(rand.NewPCG(o.Seed, uint64(epoch)+1))
			for bi := 0; bi < len(plan) && done < steps; bi++ {
				idx := plan[bi]
				bsz := len(idx)
				pix := make([]float32, bsz*per)
				ids := make([]int32, 0, bsz*caps.length)
				capIDs := make([]int32, bsz)
				for k, e := range idx {
					choices := caps.index[e.task][tasks[e.task].Data.Label(e.i)]
					c := choices[0]
					if len(choices) > 1 {
						c = choices[rng.IntN(len(choices))]
					}
					capIDs[k] = int32(c)
					ids = append(ids, caps.ids[c]...)
				}
				var (
					wg       sync.WaitGroup
					mu       sync.Mutex
					firstErr error
				)
				for w := range min(workers, bsz) {
					wg.Go(func() {
						for k := w; k < bsz; k += workers {
							e := idx[k]
							img, err := tasks[e.task].Data.Image(e.i)
							if err == nil {
								err = pre.Apply(img, pix[k*per:(k+1)*per])
							}
							if err != nil {
								mu.Lock()
								if firstErr == nil {
									firstErr = fmt.Errorf("%s example %d: %w", tasks[e.task].Data.Name(), e.i, err)
								}
								mu.Unlock()
								return
							}
						}
					})
				}
				wg.Wait()
				if firstErr != nil {
					send(&pairBatch{err: firstErr})
					return
				}
				b := &pairBatch{epoch: epoch,
					pixels: tensors.FromFlatDataAndDimensions(pix, bsz, pre.Size, pre.Size, 3),
					ids:    tensors.FromFlatDataAndDimensions(ids, bsz, caps.length),
					caps:   tensors.FromFlatDataAndDimensions(capIDs, bsz)}
				if !send(b) {
					return
				}
				done++
			}
		}
	})
}
