// Package pretraining is the pre-training stage the end-to-end examples
// share (examples/task-arithmetic, examples/backdoor-removal): a small CLIP,
// both towers, trained from scratch with contrastive learning
// (train.Contrastive) on half of each dataset's classes, so that the other
// half is new to it; the tokenizer its captions use; zero-shot heads; and
// the bookkeeping of a run folder (the settings stamp, --settings
// overrides, the log). Each example keeps its own experiment; only this
// stage, which both run, lives here.
package pretraining

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
)

// Settings are the model's sizes and the pre-training's schedule. Examples
// embed them in their own settings, so the names are those of their
// table.json "settings".
type Settings struct {
	ImageSize, Patch, Width, Layers, Heads, MLP, Embed, TextWidth, Context int
	Vocab                                                                  int
	// PreTemplates is how many of each dataset's shipped templates caption
	// the pre-training pairs (the zero-shot heads use them all).
	PreTemplates int
	// LogitScale is the initial exp(logit_scale) of pre-training.
	LogitScale float64
	// PreN is the number of pre-training examples per dataset (of its
	// pre-training classes).
	PreN, PreSteps, PreBatch int
	PreLR                    float64
}

// CLIPConfig is the model the settings describe (Hugging Face naming,
// quick_gelu, the towers sharing the number of layers and heads).
func (s Settings) CLIPConfig() clip.Config {
	return clip.Config{Naming: clip.HF,
		Vision: &clip.VisionConfig{Tower: clip.Tower{Width: s.Width, Layers: s.Layers, Heads: s.Heads, MLP: s.MLP, Act: "quick_gelu", Eps: 1e-5},
			ImageSize: s.ImageSize, PatchSize: s.Patch, Channels: 3},
		Text: &clip.TextConfig{Tower: clip.Tower{Width: s.TextWidth, Layers: s.Layers, Heads: s.Heads, MLP: 2 * s.TextWidth, Act: "quick_gelu", Eps: 1e-5},
			ContextLength: s.Context, VocabSize: s.Vocab},
		EmbedDim: s.Embed}
}

// Halves splits a dataset's C classes: the pre-training classes are the
// first ⌊C/2⌋ of datasets.Permutation(C, 0), the task classes the rest,
// both sorted.
func Halves(c int) (pre, task []int) {
	p := datasets.Permutation(c, 0)
	pre, task = slices.Clone(p[:c/2]), slices.Clone(p[c/2:])
	slices.Sort(pre)
	slices.Sort(task)
	return pre, task
}

// Halved are a dataset's splits cut along Halves: index 0 holds the
// pre-training classes, index 1 the task classes, each relabelled 0, 1, …
// (datasets.KeepClasses). Validation is the datasets package's Validation
// split (whole GTSRB tracks); Train the rest of the training set.
type Halved struct {
	Name                    string
	PreClasses, TaskClasses []int
	Train, Val, Test        [2]*datasets.Dataset
}

// OpenHalves opens the dataset called name and cuts its splits in halves.
func OpenHalves(name string, dopt datasets.Options) (*Halved, error) {
	src, err := datasets.Open(name, dopt)
	if err != nil {
		return nil, err
	}
	h := &Halved{Name: name}
	h.PreClasses, h.TaskClasses = Halves(len(src.Classes))
	for _, sp := range []struct {
		split datasets.Split
		dst   *[2]*datasets.Dataset
	}{{datasets.Train, &h.Train}, {datasets.Validation, &h.Val}, {datasets.Test, &h.Test}} {
		d, err := src.Split(sp.split)
		if err != nil {
			return nil, err
		}
		for i, classes := range [2][]int{h.PreClasses, h.TaskClasses} {
			if sp.dst[i], err = d.KeepClasses(classes); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// LoadTokenizer loads CLIP's BPE vocabulary from the shared data folder
// (../tokenizers/clip beside the vision datasets), whose short token
// sequences make contrastive training fast; without it, a byte-level
// tokenizer (longer sequences) that needs no file. vocab and context are
// the text tower's sizes for it; source says which was loaded.
func LoadTokenizer(dopt datasets.Options) (tok *clip.Tokenizer, vocab, context int, source string, err error) {
	for _, dir := range datasets.DataDirs(dopt) {
		p := filepath.Join(dir, "..", "tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz")
		if _, err := os.Stat(p); err == nil {
			tok, err = clip.LoadTokenizer(p)
			return tok, 49408, 48, p, err
		}
	}
	tok, err = clip.NewByteTokenizer()
	return tok, 514, 96, "byte-level (no BPE vocabulary found)", err
}

// Data is one dataset's share of the pre-training: its examples (of the
// pre-training classes; a poisoned view for an attack on pre-training) and
// the dataset's name, which chooses the caption templates
// (heads.DefaultTemplates).
type Data struct {
	Name string
	Pre  *datasets.Dataset
}

// Run pre-trains the CLIP of st from scratch (seed 1, logit scale
// st.LogitScale) on the pairs of data, captions of each example's class
// from the first st.PreTemplates templates of its dataset, with AdamW at
// st.PreLR, weight decay 0.1, 5% warm-up, clipping at 1, batch st.PreBatch,
// st.PreSteps steps, and saves it to dir; a dir already holding a model is
// reused unless redo. loss is the mean of the last 50 steps (0 when
// reused).
func Run(dir string, st Settings, tok *clip.Tokenizer, data []Data, redo bool, logf func(string, ...any)) (m *clip.Model, loss float64, err error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil && !redo {
		logf("reusing %s", dir)
		m, err = clip.Load(dir)
		return m, 0, err
	}
	if m, err = clip.NewRandom(st.CLIPConfig(), 1); err != nil {
		return nil, 0, err
	}
	if ls, ok := m.Weights["logit_scale"]; ok && st.LogitScale > 0 {
		tensors.MustMutableFlatData(ls, func(v []float32) {
			for i := range v {
				v[i] = float32(math.Log(st.LogitScale))
			}
		})
	}
	var pts []train.Task
	for _, d := range data {
		tpl, _ := heads.DefaultTemplates(d.Name)
		if len(tpl) > st.PreTemplates {
			tpl = tpl[:st.PreTemplates]
		}
		pts = append(pts, train.Task{Data: d.Pre, Templates: tpl}) // captions: the classes of d.Pre
	}
	opt := train.Options{LearningRate: st.PreLR, WeightDecay: 0.1, Warmup: st.PreSteps / 20, ClipNorm: 1, BatchSize: st.PreBatch, Steps: st.PreSteps, Seed: 1,
		Progress: func(p train.Progress) {
			if p.Step%max(1, p.Steps/10) == 0 || p.Step == p.Steps {
				logf("pre-training step %d/%d loss %.3f acc %.2f", p.Step, p.Steps, p.AvgLoss, p.Accuracy)
			}
		}}
	logf("pre-training CLIP (width %d, %d layers, %d px) on %d examples of the pre-training classes per dataset, %d steps", st.Width, st.Layers, st.ImageSize, st.PreN, st.PreSteps)
	res, err := train.Contrastive(m, pts, train.CLIPTokenize(tok), opt)
	if err != nil {
		return nil, 0, err
	}
	if m, err = clip.New(m.Config, res.Weights); err != nil {
		return nil, 0, err
	}
	return m, res.MeanLoss, m.Save(dir, checkpoint.WriteOptions{Force: true})
}

// ZeroShotHead builds the zero-shot head of m over classes from every
// template shipped for dataset, and saves it at path; a head already at
// path is reused unless redo. modelDir is recorded in the head.
func ZeroShotHead(path string, m *clip.Model, tok *clip.Tokenizer, modelDir, dataset string, classes []string, redo bool) (*heads.Head, error) {
	if _, err := os.Stat(path); err == nil && !redo {
		return heads.Load(path)
	}
	tpl, _ := heads.DefaultTemplates(dataset)
	name := strings.TrimSuffix(filepath.Base(path), ".safetensors")
	head, err := heads.ZeroShot(m, tok, classes, tpl, heads.ZeroShotOptions{Dataset: name, Model: modelDir, TemplatesSource: "editkit default"})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return head, head.Save(path, true)
}

// Override decodes js, a JSON object, into the settings st points to;
// unknown fields are errors.
func Override(st any, js string) error {
	if js == "" {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(st); err != nil {
		return fmt.Errorf("--settings %s: %w (the fields are those of table.json's \"settings\")", js, err)
	}
	return nil
}

// Stamp records the run's settings in out/settings.json, and refuses to
// reuse the stages of a folder made with other settings (whose checkpoints
// would not be what this run describes) unless redo. A redo that changes
// the settings leaves a marker until [Finish]: if it is interrupted, its
// folder mixes stages of two settings, and a later run without redo is
// refused rather than reusing them.
func Stamp(out string, st any, redo bool) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p, pending := filepath.Join(out, "settings.json"), filepath.Join(out, redoMarker)
	if _, err := os.Stat(pending); err == nil && !redo {
		return fmt.Errorf("%s: a --redo run with other settings did not finish, so its stages mix two settings: rerun with --redo", out)
	}
	old, err := os.ReadFile(p)
	changed := err == nil && string(old) != string(data)
	if changed && !redo {
		return fmt.Errorf("%s holds the stages of a run with other settings (--quick or not, --settings): rerun with --redo to replace them, or give another --out", out)
	}
	if changed {
		if err := checkpoint.WriteFileAtomic(pending, old); err != nil {
			return err
		}
	}
	return checkpoint.WriteFileAtomic(p, data)
}

// redoMarker holds the settings a --redo run is replacing, until it ends.
const redoMarker = "settings.redo"

// Finish marks the run in out complete (see [Stamp]).
func Finish(out string) error {
	err := os.Remove(filepath.Join(out, redoMarker))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Logger returns the examples' log: each line prefixed with the seconds
// since the call, written to w (nothing when w is nil).
func Logger(w io.Writer) func(format string, a ...any) {
	start := time.Now()
	return func(format string, a ...any) {
		if w != nil {
			fmt.Fprintf(w, "[%6.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
		}
	}
}

// TestLog is an io.Writer that sends each line of the log to t.Log, for
// the examples' tests.
func TestLog(t testing.TB) io.Writer { return testLog{t} }

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
