package main

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
)

// experiment holds what the stages share.
type experiment struct {
	preDir string
	model  *clip.Model
	tok    *clip.Tokenizer
	ev     *evaluator
	// zeroShotTest holds the pre-trained model's test outcomes by probe.
	zeroShotTest map[string][]bool
	// finetunedTest[s-1][task] holds seed s's fine-tuned model's test
	// outcomes on its own task (chosen learning rate).
	finetunedTest []map[string][]bool
	finetunedVal  []map[string]float64
}

// pretrain trains the CLIP model from scratch on the pre-training halves
// (images of the pre-training classes, captions naming them only), or
// reuses OUT/pretrained (the stage examples/internal/pretraining shares).
func pretrain(o options, st *settings, ts []*task, rep *report, logf func(string, ...any)) (*experiment, error) {
	tok, vocab, context, tokFile, err := pretraining.LoadTokenizer(datasets.Options{DataDir: o.Data})
	if err != nil {
		return nil, err
	}
	st.Vocab, st.Context = vocab, context
	if err := pretraining.Stamp(o.Out, *st, o.Redo); err != nil {
		return nil, err
	}
	logf("tokenizer: %s", tokFile)
	x := &experiment{preDir: filepath.Join(o.Out, "pretrained"), tok: tok}
	var data []pretraining.Data
	for _, t := range ts {
		data = append(data, pretraining.Data{Name: t.name, Pre: t.pre}) // captions: t.pre's classes, the pre-training half
	}
	x.model, rep.PretrainLoss, err = pretraining.Run(x.preDir, st.Settings, tok, data, o.Redo, logf)
	return x, err
}

// buildHeads makes each task's zero-shot heads from all shipped templates:
// over its task classes' names, and over its pre-training classes' names.
func buildHeads(o options, x *experiment, ts []*task) error {
	for _, t := range ts {
		var err error
		if t.head, err = pretraining.ZeroShotHead(filepath.Join(o.Out, "heads", t.name+".safetensors"), x.model, x.tok, x.preDir, t.name, t.ft.Classes(), o.Redo); err != nil {
			return err
		}
		if t.knownHead, err = pretraining.ZeroShotHead(filepath.Join(o.Out, "heads", t.name+"-pre.safetensors"), x.model, x.tok, x.preDir, t.name, t.pre.Classes(), o.Redo); err != nil {
			return err
		}
	}
	return nil
}

func lrLabel(lr float64) string { return "lr " + strconv.FormatFloat(lr, 'g', -1, 64) }

// ftPath is where a task's fine-tuned model at a learning rate and seed
// lives (linearized fine-tunes in a folder of their own).
func ftPath(out string, t *task, lr float64, seed int, linearized bool) string {
	dir := filepath.Join(out, "finetuned", strconv.FormatFloat(lr, 'g', -1, 64))
	if linearized {
		dir = filepath.Join(dir, "linearized")
	}
	return filepath.Join(dir, fmt.Sprintf("seed%d", seed), t.name)
}

// knownPath is where the fine-tune on a task's pre-training classes (the
// target of task negation) lives.
func knownPath(out string, lr float64, t *task, linearized bool) string {
	kind := "known"
	if linearized {
		kind = "known-linearized"
	}
	return filepath.Join(out, "finetuned", strconv.FormatFloat(lr, 'g', -1, 64), kind, t.name)
}

// members are the fine-tuned models of the tasks at a learning rate and
// seed.
func (x *experiment) members(ts []*task, lr float64, seed int, linearized bool) []string {
	var out []string
	for _, t := range ts {
		out = append(out, ftPath(filepath.Dir(x.preDir), t, lr, seed, linearized))
	}
	return out
}

// finetune fine-tunes the image encoder on ds through the frozen head, or
// reuses the checkpoint at p. Linearized, it trains θ of the encoder's
// linearization around the pre-trained weights with the same recipe
// (train.Options.Linearized) and records that base in the checkpoint.
func (x *experiment) finetune(o options, st settings, ds *datasets.Dataset, head *heads.Head, lr float64, seed int, linearized bool, p string, logf func(string, ...any)) error {
	if exists(filepath.Join(p, "config.json")) && !o.Redo {
		return nil
	}
	opt := train.Options{LearningRate: lr, WeightDecay: 0.1, Warmup: st.FtSteps / 10, ClipNorm: 1, BatchSize: st.FtBatch, Steps: st.FtSteps, Seed: uint64(seed),
		Linearized: linearized}
	res, err := train.Finetune(x.ev.enc, head, ds, opt)
	if err != nil {
		return fmt.Errorf("fine-tuning on %s: %w", ds.Name(), err)
	}
	kind := "fine-tuned"
	var meta map[string]string
	if linearized {
		kind = "fine-tuned linearized"
		if meta, err = x.linearizedMeta(); err != nil {
			return err
		}
	}
	// The checkpoint's folder names the classes: a task's, or a dataset's
	// pre-training classes (negation), which share the dataset's name.
	where, err := filepath.Rel(o.Out, p)
	if err != nil {
		where = p
	}
	logf("%s %s → %s (lr %g, seed %d): %d steps, loss %.3f (%.1fs)", kind, ds.Name(), where, lr, seed, res.Steps, res.MeanLoss, res.Seconds)
	return train.WriteFinetuned(x.preDir, p, res.Weights, train.WriteOptions{Force: true, Metadata: meta})
}

// linearizedMeta marks a checkpoint as θ of f_lin around the pre-trained
// model (linearize.Metadata).
func (x *experiment) linearizedMeta() (map[string]string, error) {
	abs, err := filepath.Abs(x.preDir)
	if err != nil {
		return nil, err
	}
	return linearize.Metadata(abs, x.ev.enc.Specs, x.ev.enc.Weights)
}

// finetuneAll fine-tunes one model per task (linearized or not).
func (x *experiment) finetuneAll(o options, st settings, ts []*task, lr float64, seed int, linearized bool, logf func(string, ...any)) error {
	for _, t := range ts {
		if err := x.finetune(o, st, t.ft, t.head, lr, seed, linearized, ftPath(o.Out, t, lr, seed, linearized), logf); err != nil {
			return err
		}
	}
	return nil
}

// lrChoice records the choice of the fine-tuning learning rate: each rate
// tried with the first seed, the fine-tuned models' mean validation
// accuracy, and task arithmetic's (λ chosen on validation), the quantity
// the experiment is about: the rate with the higher merged validation
// accuracy is kept.
type lrChoice struct {
	Tried       []float64 `json:"tried"`
	PreLR       float64   `json:"pretraining_lr"`
	FinetuneVal []float64 `json:"finetuned_val_mean"`
	MergedVal   []float64 `json:"task_arithmetic_val_mean"`
	Lambda      []float64 `json:"task_arithmetic_lambda"`
	Chosen      float64   `json:"chosen"`
}

func chooseLR(o options, st settings, x *experiment, ts []*task, rep *report, logf func(string, ...any)) error {
	c := &lrChoice{Tried: []float64{st.FtLR}, PreLR: st.PreLR, Chosen: st.FtLR}
	if st.FtLRAlt > 0 {
		c.Tried = append(c.Tried, st.FtLRAlt)
	}
	probes := taskProbes(ts)
	best := -1.0
	for _, lr := range c.Tried {
		if err := x.finetuneAll(o, st, ts, lr, 1, false, logf); err != nil {
			return err
		}
		members := x.members(ts, lr, 1, false)
		ftVal := map[string]float64{}
		for i, t := range ts {
			acc, _, err := x.ev.checkpointAt(members[i], []probe{{t: t}}, false)
			if err != nil {
				return err
			}
			ftVal[t.name] = acc[t.name]
		}
		d, err := x.ev.direction(x.preDir, members, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, false)
		if err != nil {
			return err
		}
		ch := x.ev.choice(eval.GoalAddition, probes, st.LambdaGrid)
		ch.Finetuned = ftVal
		chosen, err := eval.Choose(d, x.ev.enc.Weights, ch)
		if err != nil {
			return err
		}
		srch := chosen.Search
		merged := mean(srch.Points[srch.Best].Accuracy)
		c.FinetuneVal, c.MergedVal, c.Lambda = append(c.FinetuneVal, mean(ftVal)), append(c.MergedVal, merged), append(c.Lambda, srch.Chosen())
		logf("fine-tuning lr %g (%.3g of pre-training's): fine-tuned %.2f%%, task arithmetic %.2f%% at λ %g (validation means)",
			lr, lr/st.PreLR, 100*mean(ftVal), 100*merged, srch.Chosen())
		if merged > best {
			best, c.Chosen = merged, lr
		}
	}
	rep.LR = c
	return nil
}

// measureFinetuned measures every seed's fine-tuned models on their own
// tasks (validation and test) at the chosen learning rate.
func (x *experiment) measureFinetuned(st settings, ts []*task, rep *report) error {
	x.finetunedTest = nil
	x.finetunedVal = nil
	for s := 1; s <= st.Seeds; s++ {
		members := x.members(ts, rep.LR.Chosen, s, false)
		hits, val := map[string][]bool{}, map[string]float64{}
		for i, t := range ts {
			acc, _, err := x.ev.checkpointAt(members[i], []probe{{t: t}}, false)
			if err != nil {
				return err
			}
			val[t.name] = acc[t.name]
			_, h, err := x.ev.checkpointAt(members[i], []probe{{t: t}}, true)
			if err != nil {
				return err
			}
			hits[t.name] = h[t.name]
		}
		x.finetunedTest, x.finetunedVal = append(x.finetunedTest, hits), append(x.finetunedVal, val)
	}
	share := 0.0
	for _, t := range ts {
		var v, te float64
		for s := range st.Seeds {
			v += x.finetunedVal[s][t.name] / float64(st.Seeds)
			te += eval.Share(x.finetunedTest[s][t.name]) / float64(st.Seeds)
		}
		rep.FinetunedVal[t.name], rep.Finetuned[t.name] = v, te
		share += rep.ZeroShot[t.name] / te / float64(len(ts))
	}
	rep.ZeroShotShare = share
	return nil
}
