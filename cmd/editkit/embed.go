package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// embModel is a checkpoint's image encoder and, for CLIP, its text tower:
// a CLIP model in either naming, or a Hugging Face ViT with its classifier
// when it has one.
type embModel struct {
	path string
	kind string           // "clip" or "vit"
	enc  *encoder.Encoder // the image encoder (nil: no image tower)
	clip *clip.Model      // CLIP's text tower and logit_scale (nil: none)
	// classifier is a ViT's own classifier as a head (nil: none).
	classifier *heads.Head
	// lin, when set, computes the image features instead of enc: f_lin of
	// enc's weights around lin's base.
	lin *linearize.Encoder
}

// openEmbModel loads a CLIP or ViT checkpoint: its image encoder, and
// what embed and head need beyond it (CLIP's text tower and logit_scale, a
// ViT's classifier), without reading any tensor twice.
func openEmbModel(path string) (*embModel, error) {
	if path == "" {
		return nil, errors.New("no model given: pass --model CHECKPOINT (a CLIP or ViT checkpoint folder or .safetensors file)")
	}
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	m := &embModel{path: path, kind: string(encoder.Detect(ck))}
	if m.kind == string(encoder.ViT) {
		if m.enc, err = encoder.Read(ck); err != nil {
			return nil, err
		}
		c, err := vit.ConfigFor(*m.enc.ViTConfig, ck)
		if err != nil {
			return nil, err
		}
		if c.NumLabels > 0 {
			w, err := embReadRest(ck, c.Specs(), m.enc.Weights)
			if err != nil {
				return nil, err
			}
			m.classifier = &heads.Head{Classes: make([]string, c.NumLabels), Dim: m.enc.Dim,
				Weight: w.Float32("classifier.weight"), Bias: w.Float32("classifier.bias"), Scale: 1}
		}
		return m, nil
	}
	c, err := clip.ReadConfig(ck)
	if err != nil {
		return nil, fmt.Errorf("%w (editkit embeds with CLIP models, either naming, and Hugging Face ViTs)", err)
	}
	var own models.Weights
	if c.Vision != nil {
		if m.enc, err = encoder.Read(ck); err != nil {
			return nil, err
		}
		own = m.enc.Weights
	}
	if c.Text != nil {
		w, err := embReadRest(ck, c.Specs(), own)
		if err != nil {
			return nil, err
		}
		if m.clip, err = clip.New(c, w); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// embReadRest returns the weights of specs: those in have, the others read
// from ck.
func embReadRest(ck *checkpoint.Checkpoint, specs []checkpoint.TensorSpec, have models.Weights) (models.Weights, error) {
	var rest []checkpoint.TensorSpec
	for _, s := range specs {
		if _, ok := have[s.Name]; !ok {
			rest = append(rest, s)
		}
	}
	w, err := models.ReadWeights(ck, rest)
	if err != nil {
		return nil, err
	}
	for k, v := range have {
		w[k] = v
	}
	return w, nil
}

func (m *embModel) hasImages() bool { return m.enc != nil }
func (m *embModel) hasTexts() bool  { return m.clip != nil && m.clip.Config.Text != nil }

// dim is the image feature size (0: no image tower).
func (m *embModel) dim() int {
	if m.enc == nil {
		return 0
	}
	return m.enc.Dim
}

// encodeDataset preprocesses the images of ds as the model expects and
// returns their features [n, dim] and, for a ViT with a classifier, its
// logits [n, labels] (computed on the host from the features). Every call of the model gets a full batch (the last
// one padded), so the encoder is compiled once.
func (m *embModel) encodeDataset(ds *datasets.Dataset, batchSize int, progress func(done, total int)) (feats, logits []float32, err error) {
	if !m.hasImages() {
		return nil, nil, fmt.Errorf("%s has no image tower", m.path)
	}
	n := ds.Len()
	if n == 0 {
		return nil, nil, fmt.Errorf("%s holds no images", ds.Name())
	}
	bs := min(max(batchSize, 1), n)
	pre, dim := m.enc.Preprocess, m.enc.Dim
	it, err := ds.Batches(pre, datasets.BatchOptions{BatchSize: bs})
	if err != nil {
		return nil, nil, err
	}
	per, s := pre.TensorLen(), pre.Size
	buf := make([]float32, bs*per)
	feats = make([]float32, 0, n*dim)
	done := 0
	for it.Next() {
		b := it.Batch()
		copy(buf, b.Images)
		last := b.Images[(b.Size-1)*per : b.Size*per]
		for k := b.Size; k < bs; k++ {
			copy(buf[k*per:(k+1)*per], last)
		}
		pix, err := models.Pixels(buf, bs, s, s)
		if err != nil {
			return nil, nil, err
		}
		var f []float32
		if m.lin != nil {
			f, err = m.lin.Encode(m.enc.Weights, pix)
		} else {
			f, err = m.enc.Encode(nil, pix)
		}
		pix.FinalizeAll()
		if err != nil {
			return nil, nil, err
		}
		if len(f) != bs*dim {
			return nil, nil, fmt.Errorf("the image encoder returned %d values for %d images of dimension %d", len(f), bs, dim)
		}
		f = f[:b.Size*dim]
		feats = append(feats, f...)
		if m.classifier != nil {
			l, err := m.classifier.Logits(f, b.Size)
			if err != nil {
				return nil, nil, err
			}
			logits = append(logits, l...)
		}
		done += b.Size
		if progress != nil {
			progress(done, n)
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, err
	}
	return feats, logits, nil
}

// embImageSet is what --images names: the examples, whether they carry
// labels, and a description for the metadata.
type embImageSet struct {
	ds       *datasets.Dataset
	labelled bool
	source   string
	split    string // "" when the source has no splits
	classes  []string
}

var embIDXImagesName = regexp.MustCompile(`images-idx[34]-ubyte`)

// embOpenImages resolves --images: an IDX images file (with its labels file
// beside it when there is one), a dataset folder (IDX files or
// train/<class>/, test/<class>/), a folder of class folders of images, or a
// dataset name (see datasets.Resolve).
func embOpenImages(src string, split datasets.Split, splitSet bool, opts datasets.Options) (*embImageSet, error) {
	st, err := os.Stat(src)
	switch {
	case err == nil && !st.IsDir():
		if splitSet {
			return nil, fmt.Errorf("--split applies to datasets; %s is one IDX file", src)
		}
		return embOpenIDX(src)
	case err == nil:
		abs, err := filepath.Abs(src)
		if err != nil {
			return nil, err
		}
		s, openErr := datasets.Open(abs, opts)
		if openErr == nil {
			ds, err := s.Split(split)
			if err != nil {
				return nil, err
			}
			return &embImageSet{ds: ds, labelled: true, source: src, split: string(split), classes: s.Classes}, nil
		}
		ds, err := datasets.ReadImageFolder(src, nil)
		if err != nil {
			return nil, fmt.Errorf("--images %s is neither a dataset folder (%v) nor a folder of class folders (%v)", src, openErr, err)
		}
		if splitSet {
			return nil, fmt.Errorf("--split applies to datasets; %s is a folder of class folders", src)
		}
		return &embImageSet{ds: ds, labelled: true, source: src, classes: ds.Classes()}, nil
	}
	s, err := datasets.Open(src, opts)
	if err != nil {
		return nil, err
	}
	ds, err := s.Split(split)
	if err != nil {
		return nil, err
	}
	return &embImageSet{ds: ds, labelled: true, source: src, split: string(split), classes: s.Classes}, nil
}

// embOpenIDX reads an IDX images file, with the labels file of the same
// name (images-idx3 → labels-idx1) when it exists.
func embOpenIDX(path string) (*embImageSet, error) {
	dir, base := filepath.Split(path)
	if embIDXImagesName.MatchString(base) {
		lb := strings.TrimSuffix(embIDXImagesName.ReplaceAllString(base, "labels-idx1-ubyte"), ".gz")
		for _, c := range []string{lb, lb + ".gz"} {
			lp := filepath.Join(dir, c)
			if _, err := os.Stat(lp); err != nil {
				continue
			}
			var classes []string
			if cf := filepath.Join(dir, "classes.txt"); embFileExists(cf) {
				var err error
				if classes, err = datasets.ReadClasses(cf); err != nil {
					return nil, err
				}
			}
			ds, err := datasets.ReadIDXImages(path, lp, classes)
			if err != nil {
				return nil, err
			}
			return &embImageSet{ds: ds, labelled: true, source: path, classes: ds.Classes()}, nil
		}
	}
	x, err := datasets.ReadIDXFile(path)
	if err != nil {
		return nil, err
	}
	var n, h, w, c int
	switch {
	case len(x.Dims) == 3:
		n, h, w, c = x.Dims[0], x.Dims[1], x.Dims[2], 1
	case len(x.Dims) == 4 && (x.Dims[3] == 1 || x.Dims[3] == 3):
		n, h, w, c = x.Dims[0], x.Dims[1], x.Dims[2], x.Dims[3]
	default:
		return nil, fmt.Errorf("%s: IDX images must be [N,H,W] or [N,H,W,3], the file holds %v", path, x.Dims)
	}
	ds, err := datasets.FromPixels(filepath.Base(path), []string{""}, h, w, c, x.Data, make([]int, n))
	if err != nil {
		return nil, err
	}
	return &embImageSet{ds: ds, source: path}, nil
}

func embFileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// embReadLines reads the non-blank lines of a text file, trimmed.
func embReadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no lines of text", path)
	}
	return out, nil
}

// embFindTokenizer loads the CLIP tokenizer: --tokenizer when given, else
// the one in the model's folder (vocab.json and merges.txt, or
// bpe_simple_vocab_16e6.txt.gz), else the shared one
// (../shared/data/tokenizers/clip relative to the working directory or the
// repository root).
func embFindTokenizer(flag, modelPath string) (*clip.Tokenizer, string, error) {
	if flag != "" {
		tok, err := clip.LoadTokenizer(flag)
		return tok, flag, err
	}
	dir := modelPath
	if st, err := os.Stat(modelPath); err == nil && !st.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	cands := []string{dir}
	shared := filepath.Join("..", "shared", "data", "tokenizers", "clip")
	if wd, err := os.Getwd(); err == nil {
		cands = append(cands, filepath.Join(wd, shared))
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				cands = append(cands, filepath.Join(d, shared))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	cands = slices.Compact(cands)
	for _, c := range cands {
		for _, f := range []string{clip.HFVocabFile, clip.OpenAIVocabFile} {
			if _, err := os.Stat(filepath.Join(c, f)); err == nil {
				tok, err := clip.LoadTokenizer(c)
				return tok, c, err
			}
		}
	}
	return nil, "", fmt.Errorf("no CLIP tokenizer found in %s: pass --tokenizer PATH (a folder with %s and %s, or OpenAI's %s)",
		strings.Join(cands, ", "), clip.HFVocabFile, clip.HFMergesFile, clip.OpenAIVocabFile)
}

// embProgress shows the progress of a count of items (images, texts) on
// stderr: a bar on a terminal, else a line at each quarter, at most every
// logEvery.
type embProgress struct {
	w          io.Writer
	desc, unit string
	tty        bool
	bar        *progressbar.ProgressBar
	step       int
	shown      time.Time
}

func (a *app) newEmbProgress(desc, unit string) *embProgress {
	if a.quiet {
		return nil
	}
	tty := false
	if f, ok := a.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &embProgress{w: a.stderr, desc: desc, unit: unit, tty: tty, shown: time.Now()}
}

func (p *embProgress) update(done, total int) {
	if p == nil || total <= 0 {
		return
	}
	if !p.tty {
		if q := done * 4 / total; q > p.step && time.Since(p.shown) >= logEvery {
			p.step, p.shown = q, time.Now()
			fmt.Fprintf(p.w, "editkit: %s: %d of %d %s\n", p.desc, done, total, p.unit)
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionSetItsString(p.unit),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Set(done)
}

// callback returns update as a function, nil when quiet.
func (p *embProgress) callback() func(done, total int) {
	if p == nil {
		return nil
	}
	return p.update
}

func (p *embProgress) done() {
	if p != nil && p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}

// embNotice prints a line on stderr unless --quiet.
func (a *app) embNotice(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: "+format+"\n", args...)
	}
}

// embedSummary is embed's --json result.
type embedSummary struct {
	Command   string   `json:"command"`
	Output    string   `json:"output"`
	Model     string   `json:"model"`
	ModelType string   `json:"model_type"`
	Images    int      `json:"images"`
	Texts     int      `json:"texts"`
	Dim       int      `json:"dim"`
	Tensors   []string `json:"tensors"`
	Seconds   float64  `json:"seconds"`
}

// Tensor names of embed's output.
const (
	embImageTensor  = "image_embeddings"
	embLabelsTensor = "labels"
	embTextTensor   = "text_embeddings"
	embLogitsTensor = "logits"
)

func (a *app) embedCmd() *cobra.Command {
	var (
		model, images, split, texts, data, tokenizer, out string
		limit, batch                                      int
		force                                             bool
		lin                                               linearizeFlags
	)
	c := &cobra.Command{
		Use:   "embed --model MODEL [--images SRC] [--texts FILE] -o OUT.safetensors",
		Short: "Write a model's image (and text) embeddings, and their logits, to a safetensors file",
		Long: `embed runs a model's encoders and writes what they give as a safetensors file:

  image_embeddings  float32 [N, D]  unnormalized: CLIP's image embeddings
                                    (encode_image), a ViT's pooled feature
  labels            int64 [N]       the images' labels, when they have some
  text_embeddings   float32 [T, D]  CLIP only: one per line of --texts
                                    (encode_text, unnormalized)
  logits            float32         CLIP with images and texts: [N, T],
                                    exp(logit_scale)·cos(image, text);
                                    a ViT with a classifier: [N, labels]

--images takes an IDX images file (its labels file beside it is used when
present), a dataset folder (IDX files or train/<class>/ and test/<class>/),
a folder of class folders, or a dataset name (mnist, or a folder under
--data / $EDITKIT_DATA / ../shared/data/vision). --split picks the split of a
dataset (train, val, test, trainval); --limit N keeps its first N images.
Images are preprocessed as the model expects (CLIP's or ViT's, at its image
size). --texts is a text file, one text a line (blank lines skipped),
tokenized with CLIP's tokenizer (--tokenizer, else the model's folder, else
../shared/data/tokenizers/clip). The metadata records the model, the sources,
the class names and the texts.

--linearize-at BASE computes the image embeddings (and the logits made from
them) with the image encoder linearized around BASE, f(x; BASE) + J·(θ − BASE);
a checkpoint fine-tuned with 'editkit finetune --linearized' is linearized
around the base its metadata records by default (--no-linearize: plainly).
Text embeddings are always the plain text tower's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			if out == "" {
				return errors.New("no output given: pass -o OUT.safetensors")
			}
			if !strings.HasSuffix(out, ".safetensors") {
				return fmt.Errorf("output %s: embed writes one .safetensors file; end the name in .safetensors", out)
			}
			if images == "" && texts == "" {
				return errors.New("nothing to embed: pass --images and/or --texts")
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want a positive number of images", limit)
			}
			if batch <= 0 {
				return fmt.Errorf("--batch-size %d: want > 0", batch)
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			inputs := []string{model}
			if images != "" {
				if _, err := os.Stat(images); err == nil {
					inputs = append(inputs, images)
				}
			}
			if texts != "" {
				inputs = append(inputs, texts)
			}
			meta := map[string]string{
				"editkit.kind":  "embeddings",
				"editkit.model": model,
			}
			var (
				set                  *embImageSet
				imgFeats, imgLogits  []float32
				txtFeats             []float32
				lines                []string
				tok                  *clip.Tokenizer
				n, dimText, numTexts int
			)
			if texts != "" {
				if lines, err = embReadLines(texts); err != nil {
					return fmt.Errorf("--texts: %w", err)
				}
			}
			// The inputs are checked before the model is read.
			if images != "" {
				if set, err = embOpenImages(images, sp, cmd.Flags().Changed("split"), datasets.Options{DataDir: data}); err != nil {
					return err
				}
				set.ds = set.ds.Head(limit)
			}
			m, err := openEmbModel(model)
			if err != nil {
				return err
			}
			if texts != "" && !m.hasTexts() {
				if m.kind == "vit" {
					return fmt.Errorf("--texts: %s is a ViT, which has no text encoder (CLIP models have one)", model)
				}
				return fmt.Errorf("--texts: the CLIP checkpoint %s has no text tower", model)
			}
			if images != "" && !m.hasImages() {
				return fmt.Errorf("--images: the CLIP checkpoint %s has no image tower", model)
			}
			if images != "" {
				if m.lin, err = a.linearized("embed", m.enc, lin); err != nil {
					return err
				}
				if m.lin != nil {
					defer m.lin.Close()
					meta["editkit.linearized_at"] = m.lin.Base.Path
				}
			}
			meta["editkit.model_type"] = m.kind
			if texts != "" {
				var where string
				if tok, where, err = embFindTokenizer(tokenizer, model); err != nil {
					return err
				}
				meta["editkit.tokenizer"] = where
			}
			if images != "" {
				ds := set.ds
				n = ds.Len()
				p := a.newEmbProgress("embedding images", "images")
				imgFeats, imgLogits, err = m.encodeDataset(ds, batch, p.callback())
				p.done()
				if err != nil {
					return err
				}
				meta["editkit.images"] = set.source
				meta["editkit.features"] = m.enc.Features()
				meta["editkit.preprocess"] = fmt.Sprintf("%s %d", m.kind, m.enc.Preprocess.Size)
				if set.split != "" {
					meta["editkit.split"] = set.split
				}
				if limit > 0 {
					meta["editkit.limit"] = strconv.Itoa(limit)
				}
				if set.labelled {
					cj, _ := json.Marshal(set.classes)
					meta["editkit.classes"] = string(cj)
				}
			}
			if texts != "" {
				p := a.newEmbProgress("embedding texts", "texts")
				txtFeats, dimText, err = heads.EncodeTexts(m.clip, tok, lines, heads.TextOptions{BatchSize: batch, Progress: p.callback()})
				p.done()
				if err != nil {
					return err
				}
				numTexts = len(lines)
				tj, _ := json.Marshal(lines)
				meta["editkit.texts"] = string(tj)
				meta["editkit.texts_file"] = texts
			}
			dim := m.dim()
			if dim == 0 {
				dim = dimText
			}
			var specs []checkpoint.TensorSpec
			var logits []float32
			logitCols := 0
			if images != "" {
				specs = append(specs, checkpoint.TensorSpec{Name: embImageTensor, DType: checkpoint.F32, Shape: []int64{int64(n), int64(m.enc.Dim)}})
				if set.labelled {
					specs = append(specs, checkpoint.TensorSpec{Name: embLabelsTensor, DType: checkpoint.I64, Shape: []int64{int64(n)}})
				}
			}
			if texts != "" {
				specs = append(specs, checkpoint.TensorSpec{Name: embTextTensor, DType: checkpoint.F32, Shape: []int64{int64(numTexts), int64(dimText)}})
			}
			switch {
			case images != "" && texts != "":
				scale, ok := heads.LogitScale(m.clip)
				if !ok || m.dim() != dimText {
					a.embNotice("%s has no logit_scale or no common embedding space: logits not written", model)
					break
				}
				logits = embCosineLogits(imgFeats, txtFeats, n, numTexts, dimText, math.Exp(scale))
				logitCols = numTexts
				meta["editkit.logit_scale"] = strconv.FormatFloat(scale, 'g', -1, 64)
			case imgLogits != nil:
				logits, logitCols = imgLogits, len(m.classifier.Classes)
			}
			if logits != nil {
				specs = append(specs, checkpoint.TensorSpec{Name: embLogitsTensor, DType: checkpoint.F32, Shape: []int64{int64(n), int64(logitCols)}})
			}
			w, err := checkpoint.Create(out, specs, checkpoint.WriteOptions{Metadata: meta, Force: force, Inputs: inputs})
			if err != nil {
				return err
			}
			defer w.Abort()
			sum := embedSummary{Command: "embed", Output: out, Model: model, ModelType: m.kind, Images: n, Texts: numTexts, Dim: dim}
			for _, s := range specs {
				var err error
				switch s.Name {
				case embImageTensor:
					err = w.WriteFloat32(s.Name, imgFeats)
				case embLabelsTensor:
					raw := make([]byte, 0, 8*n)
					for _, l := range set.ds.Labels() {
						raw = binary.LittleEndian.AppendUint64(raw, uint64(l))
					}
					err = w.Write(s.Name, raw)
				case embTextTensor:
					err = w.WriteFloat32(s.Name, txtFeats)
				case embLogitsTensor:
					err = w.WriteFloat32(s.Name, logits)
				}
				if err != nil {
					return err
				}
				sum.Tensors = append(sum.Tensors, s.Name)
			}
			if err := w.Commit(); err != nil {
				return err
			}
			sum.Seconds = time.Since(start).Seconds()
			if a.json {
				return a.printJSON(sum)
			}
			if !a.quiet {
				fmt.Fprintf(a.stderr, "editkit: embed: wrote %s (%d images, %d texts, dimension %d; %s; %.1fs)\n",
					out, n, numTexts, dim, strings.Join(sum.Tensors, ", "), sum.Seconds)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "CLIP (Hugging Face or OpenAI/open_clip naming) or ViT checkpoint (required)")
	f.StringVar(&images, "images", "", "images: an IDX images file, a dataset folder, a folder of class folders, or a dataset name")
	f.StringVar(&split, "split", "test", "split of a dataset: train, val, test or trainval")
	f.IntVar(&limit, "limit", 0, "embed only the first N images (0: all)")
	f.StringVar(&texts, "texts", "", "text file, one text a line, for CLIP's text encoder")
	f.StringVar(&data, "data", "", "folder holding the named datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.StringVar(&tokenizer, "tokenizer", "", "CLIP tokenizer: a folder with vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz (default: the model's folder, else ../shared/data/tokenizers/clip)")
	f.IntVar(&batch, "batch-size", 32, "images or texts per call of the model")
	f.StringVarP(&out, "output", "o", "", "output .safetensors file (required)")
	f.BoolVar(&force, "force", false, "replace the output if it exists")
	markPaths(f, pathInput, "model", "texts", "tokenizer")
	markPaths(f, pathDataset, "images")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output")
	lin.register(f)
	return c
}

// embCosineLogits computes scale·cos(image_i, text_j), [n, t], in float64.
func embCosineLogits(img, txt []float32, n, t, dim int, scale float64) []float32 {
	inv := func(v []float32) float64 {
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		if ss == 0 {
			return 0
		}
		return 1 / math.Sqrt(ss)
	}
	tn := make([]float64, t)
	for j := range t {
		tn[j] = inv(txt[j*dim : (j+1)*dim])
	}
	out := make([]float32, n*t)
	for i := range n {
		a := img[i*dim : (i+1)*dim]
		ia := inv(a)
		for j := range t {
			b := txt[j*dim : (j+1)*dim]
			var d float64
			for k, v := range a {
				d += float64(v) * float64(b[k])
			}
			out[i*t+j] = float32(scale * d * ia * tn[j])
		}
	}
	return out
}
