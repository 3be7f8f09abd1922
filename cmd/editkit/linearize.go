package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/spf13/pflag"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
)

// linearizeFlags are --linearize-at and --no-linearize, shared by the
// commands that evaluate an image encoder (eval, embed).
type linearizeFlags struct {
	at    string
	plain bool
}

func (l *linearizeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&l.at, "linearize-at", "", "evaluate the model linearized around this base checkpoint, f(x; base) + J·(θ − base) (post-hoc linearization; default for a linearized fine-tune: the base its metadata records)")
	f.BoolVar(&l.plain, "no-linearize", false, "evaluate a linearized fine-tune as the plain model f(x; θ)")
	markPaths(f, pathInput, "linearize-at")
}

// linearized returns the encoder that evaluates enc linearized (nil:
// evaluate it as it is), with a notice naming the base when the model's
// metadata chose it.
func (a *app) linearized(command string, enc *encoder.Encoder, l linearizeFlags) (*linearize.Encoder, error) {
	return a.linearizedAll(command, []*encoder.Encoder{enc}, l)
}

// linearizedAll is linearized for several models evaluated together
// (around one base).
func (a *app) linearizedAll(command string, encs []*encoder.Encoder, l linearizeFlags) (*linearize.Encoder, error) {
	lin, ch, err := linearize.ForModels(encs, l.at, l.plain)
	if err != nil {
		return nil, err
	}
	if ch.Recorded && !a.quiet {
		what := encs[0].Path + " is a linearized fine-tune"
		if len(encs) > 1 {
			what = "the models are linearized fine-tunes"
		}
		fmt.Fprintf(a.stderr, "editkit: %s: %s: evaluating linearized around the recorded base %s (--no-linearize: as plain models)\n", command, what, ch.Base)
	}
	return lin, nil
}

// addLinearizedMeta records in meta that a fine-tune of the model at path
// (whose encoder enc was trained linearized around its own weights) is θ
// of f_lin around that base.
func addLinearizedMeta(meta map[string]string, path string, enc *encoder.Encoder) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	lm, err := linearize.Metadata(abs, enc.Specs, enc.Weights)
	if err != nil {
		return err
	}
	for k, v := range lm {
		meta[k] = v
	}
	return nil
}

// finetunedClassifier classifies with the fine-tuned weights w of enc, through
// f_lin around enc's own weights when the fine-tuning was linearized. The
// returned function frees what it compiled.
func finetunedClassifier(enc *encoder.Encoder, w models.Weights, head *heads.Head, linearized bool) (eval.Classifier, func(), error) {
	if !linearized {
		clf, err := enc.Classifier(w, head)
		return clf, func() {}, err
	}
	lin, err := linearize.NewEncoder(enc)
	if err != nil {
		return nil, nil, err
	}
	clf, err := lin.Classifier(w, head)
	if err != nil {
		lin.Close()
		return nil, nil, err
	}
	return clf, lin.Close, nil
}

// evalAccuracyLin is evalAccuracy through the linearized encoder lin when
// it is not nil.
func evalAccuracyLin(enc *encoder.Encoder, lin *linearize.Encoder, w models.Weights, t evalTask, batch int, p *countProgress) (eval.Result, error) {
	if lin == nil {
		return evalAccuracy(enc, w, t, batch, p)
	}
	clf, err := lin.Classifier(w, t.head)
	if err != nil {
		return eval.Result{}, err
	}
	return eval.Accuracy(clf, t.ds, enc.Preprocess, eval.Options{BatchSize: batch, Progress: p.perCall()})
}

// searchLinearization decides how merge --search evaluates its candidates:
// linearized around --linearize-at, or around the merge's base when the
// models are linearized fine-tunes (then meta marks the written merge as
// linearized around it too), else plainly (nil).
func (a *app) searchLinearization(base *encoder.Encoder, members []string, l linearizeFlags) (*linearize.Encoder, map[string]string, error) {
	lin, ch, err := linearize.ForMerge(base, members, l.at, l.plain)
	if err != nil || lin == nil {
		return nil, nil, err
	}
	if ch.Elsewhere && !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: merge --search: warning: --linearize-at %s holds other weights than --base %s: the candidates θ₀ + λΔ are linearized around a point they do not start from (post-hoc linearization is around the pre-trained model, the merge's base)\n", ch.Base, base.Path)
	}
	if !ch.Recorded {
		return lin, nil, nil
	}
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: merge --search: the models are linearized fine-tunes: evaluating every candidate linearized around the base %s (--no-linearize: plainly)\n", base.Path)
	}
	meta := map[string]string{}
	if err := addLinearizedMeta(meta, base.Path, base); err != nil {
		lin.Close()
		return nil, nil, err
	}
	return lin, meta, nil
}

// withMetadata returns meta with extra added (meta itself when extra is
// empty).
func withMetadata(meta, extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return meta
	}
	out := make(map[string]string, len(meta)+len(extra))
	for k, v := range meta {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// linearizedMeta is the record of a merge (or a task vector, or an
// application of task vectors) of linearized fine-tunes into their own
// base: such a merge is θ of f_lin around that base too, so eval and embed
// evaluate it linearized by default, and its task vectors carry the record
// on to the models built from them. It is nil for other merges, with a
// warning when only some of the members are linearized; linearized
// fine-tunes of another base than base are an error. Without a base (a
// configuration without base_model) the members' record is carried over.
func (a *app) linearizedMeta(command, base string, members []string) (map[string]string, error) {
	lin, info, err := linearize.Linearized(members)
	if err != nil || len(lin) == 0 {
		return nil, err
	}
	if len(lin) < len(members) {
		if !a.quiet {
			plain := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return slices.Contains(lin, m) })
			fmt.Fprintf(a.stderr, "editkit: %s: warning: %s is a linearized fine-tune but %s is not: the output is a plain model, evaluated as f(x; θ) (give only linearized fine-tunes to stay in the tangent space)\n", command, lin[0], plain[0])
		}
		return nil, nil
	}
	if base == "" {
		return info.Metadata(), nil
	}
	enc, err := encoder.Load(base)
	if err != nil {
		return nil, err
	}
	l, ch, err := linearize.ForMerge(enc, members, "", false)
	if err != nil {
		return nil, err
	}
	l.Close()
	meta := map[string]string{}
	if ch.Recorded {
		err = addLinearizedMeta(meta, base, enc)
	}
	return meta, err
}
