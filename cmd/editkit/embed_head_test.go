package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// A tiny CLIP whose architecture shapes alone give back (one head per
// tower, QuickGELU), so that it loads from a bare OpenAI-named
// .safetensors file too; its vocabulary is ehByteVocab's.
func ehTinyCLIP(n clip.Naming) clip.Config {
	return clip.Config{Naming: n,
		Vision:   &clip.VisionConfig{Tower: clip.Tower{Width: 16, Layers: 1, Heads: 1, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 16, PatchSize: 8, Channels: 3},
		Text:     &clip.TextConfig{Tower: clip.Tower{Width: 8, Layers: 1, Heads: 1, MLP: 16, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 40, VocabSize: 514},
		EmbedDim: 12}
}

// ehByteVocab writes a CLIP tokenizer without merges (the 512 byte symbols,
// then the start and end tokens) as Hugging Face's vocab.json and
// merges.txt into dir.
func ehByteVocab(t *testing.T, dir string) {
	t.Helper()
	ehWriteFile(t, filepath.Join(dir, clip.HFVocabFile), clip.ByteVocab())
	ehWriteFile(t, filepath.Join(dir, clip.HFMergesFile), []byte(clip.ByteMerges))
}

func ehWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ehIDX encodes uint8 data of the given dimensions as an IDX file.
func ehIDX(dims []int, data []byte) []byte {
	out := []byte{0, 0, 8, byte(len(dims))}
	for _, d := range dims {
		out = binary.BigEndian.AppendUint32(out, uint32(d))
	}
	return append(out, data...)
}

// ehToyDataset writes an IDX dataset folder of 8×8 gray images in 3 classes
// (brightness by class, with noise): train 24 images, test 9.
func ehToyDataset(t *testing.T, dir string) {
	t.Helper()
	r := rand.New(rand.NewPCG(9, 9))
	for _, sp := range []struct {
		name string
		n    int
	}{{"train", 24}, {"test", 9}} {
		pix := make([]byte, sp.n*64)
		labels := make([]byte, sp.n)
		for i := range sp.n {
			labels[i] = byte(i % 3)
			for j := range 64 {
				pix[i*64+j] = byte(40 + 80*int(labels[i]) + r.IntN(30))
			}
		}
		ehWriteFile(t, filepath.Join(dir, sp.name+"-images-idx3-ubyte"), ehIDX([]int{sp.n, 8, 8}, pix))
		ehWriteFile(t, filepath.Join(dir, sp.name+"-labels-idx1-ubyte"), ehIDX([]int{sp.n}, labels))
	}
	ehWriteFile(t, filepath.Join(dir, "classes.txt"), []byte("cat\ndog\nbird\n"))
}

// ehImageFolder writes class folders of small RGB PNGs of assorted sizes.
func ehImageFolder(t *testing.T, dir string) {
	t.Helper()
	for c, class := range []string{"red", "green"} {
		for i := range 3 {
			m := image.NewRGBA(image.Rect(0, 0, 10+i, 12))
			for y := range 12 {
				for x := range 10 + i {
					v := uint8(60 * (x + y + i) % 256)
					if c == 0 {
						m.Set(x, y, color.RGBA{200, v, 0, 255})
					} else {
						m.Set(x, y, color.RGBA{0, 200, v, 255})
					}
				}
			}
			var buf bytes.Buffer
			if err := png.Encode(&buf, m); err != nil {
				t.Fatal(err)
			}
			ehWriteFile(t, filepath.Join(dir, class, string(rune('a'+i))+".png"), buf.Bytes())
		}
	}
}

type ehCLI struct {
	bin, dir string
}

func (c *ehCLI) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *ehCLI) ok(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	o, e, err := c.run(args...)
	if err != nil {
		t.Fatalf("editkit %s: %v\n%s", strings.Join(args, " "), err, e)
	}
	return o, e
}

func (c *ehCLI) fails(t *testing.T, want string, args ...string) {
	t.Helper()
	_, e, err := c.run(args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasPrefix(e, "editkit: ") || !strings.Contains(e, want) {
		t.Errorf("editkit %s: want exit status 1 and an error mentioning %q, got %v:\n%s", strings.Join(args, " "), want, err, e)
	}
}

func (c *ehCLI) path(name string) string { return filepath.Join(c.dir, name) }

// ehReadTensor reads a tensor of a safetensors file as float32 (I64 too) with
// its shape.
func ehReadTensor(t *testing.T, path, name string) ([]float64, []int64) {
	t.Helper()
	ck, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	info, ok := ck.Tensor(name)
	if !ok {
		t.Fatalf("%s has no tensor %q", path, name)
	}
	var out []float64
	if info.DType == checkpoint.I64 {
		raw, err := ck.ReadRaw(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(raw); i += 8 {
			out = append(out, float64(int64(binary.LittleEndian.Uint64(raw[i:]))))
		}
		return out, info.Shape
	}
	v, _, err := ck.ReadFloat32(name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range v {
		out = append(out, float64(x))
	}
	return out, info.Shape
}

func ehClose(t *testing.T, what string, got []float64, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-float64(want[i])) > tol*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("%s [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestEmbedAndHeadCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the editkit binary")
	}
	c := &ehCLI{bin: filepath.Join(t.TempDir(), "editkit"), dir: t.TempDir()}
	if out, err := exec.Command("go", "build", "-o", c.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Fixtures: one random CLIP in both namings (the HF folder carries the
	// tokenizer), a ViT with a classifier, an IDX dataset, an image folder.
	hf, err := clip.NewRandom(ehTinyCLIP(clip.HF), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := hf.Save(c.path("clip-hf"), checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ehByteVocab(t, c.path("clip-hf"))
	oa, err := clip.NewRandom(ehTinyCLIP(clip.OpenAI), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := oa.Save(c.path("clip-oa.safetensors"), checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	vc := vit.Config{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, ImageSize: 16, PatchSize: 8,
		NumChannels: 3, LayerNormEps: 1e-12, HiddenAct: "gelu", QKVBias: true, NumLabels: 3, Prefix: "vit."}
	vm, err := vit.NewRandom(vc, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Save(c.path("vit"), checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ehToyDataset(t, c.path("toy"))
	ehToyDataset(t, c.path("data/cifar10"))
	ehImageFolder(t, c.path("imgs"))
	ehWriteFile(t, c.path("texts.txt"), []byte("a photo of a cat.\n\n  a photo of a dog.  \na bird\n"))
	texts := []string{"a photo of a cat.", "a photo of a dog.", "a bird"}
	tok, err := clip.LoadTokenizer(c.path("clip-hf"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("embed CLIP", func(t *testing.T) {
		out, _ := c.ok(t, "embed", "--model", "clip-hf", "--images", "toy", "--limit", "5", "--texts", "texts.txt",
			"--batch-size", "2", "-o", "emb.safetensors", "--json")
		var sum embedSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("--json output %q: %v", out, err)
		}
		if sum.Images != 5 || sum.Texts != 3 || sum.Dim != 12 || sum.ModelType != "clip" ||
			!slices.Equal(sum.Tensors, []string{"image_embeddings", "labels", "text_embeddings", "logits"}) {
			t.Errorf("summary %+v", sum)
		}
		// Independently: the first 5 test images, CLIP-preprocessed, through
		// the model's own Logits.
		ds, err := datasets.Load(c.path("toy"), datasets.Test, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		it, err := ds.Subset([]int{0, 1, 2, 3, 4}).Batches(datasets.CLIP(16), datasets.BatchOptions{BatchSize: 5})
		if err != nil || !it.Next() {
			t.Fatal(err, it.Err())
		}
		pix, _ := models.Pixels(it.Batch().Images, 5, 16, 16)
		rows := make([][]int, len(texts))
		for i, s := range texts {
			rows[i], _, _ = tok.TokenizeLength(s, 40, true)
		}
		ids, _ := clip.TokenIDs(rows)
		logits, img, txt, err := hf.Logits(pix, ids)
		if err != nil {
			t.Fatal(err)
		}
		got, shape := ehReadTensor(t, c.path("emb.safetensors"), "image_embeddings")
		if !slices.Equal(shape, []int64{5, 12}) {
			t.Errorf("image_embeddings shape %v", shape)
		}
		ehClose(t, "image_embeddings", got, tensors.MustCopyFlatData[float32](img), 1e-5)
		got, _ = ehReadTensor(t, c.path("emb.safetensors"), "text_embeddings")
		ehClose(t, "text_embeddings", got, tensors.MustCopyFlatData[float32](txt), 1e-5)
		got, shape = ehReadTensor(t, c.path("emb.safetensors"), "logits")
		if !slices.Equal(shape, []int64{5, 3}) {
			t.Errorf("logits shape %v", shape)
		}
		ehClose(t, "logits", got, tensors.MustCopyFlatData[float32](logits), 1e-4)
		labels, _ := ehReadTensor(t, c.path("emb.safetensors"), "labels")
		if !slices.Equal(labels, []float64{0, 1, 2, 0, 1}) {
			t.Errorf("labels %v", labels)
		}
		ck, err := checkpoint.Open(c.path("emb.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		if md := ck.Metadata; md["editkit.kind"] != "embeddings" || md["editkit.split"] != "test" || md["editkit.classes"] != `["cat","dog","bird"]` ||
			!strings.Contains(md["editkit.texts"], "a photo of a dog.") {
			t.Errorf("metadata %v", md)
		}
	})

	t.Run("embed CLIP OpenAI naming from an IDX file", func(t *testing.T) {
		c.ok(t, "embed", "--model", "clip-oa.safetensors", "--tokenizer", "clip-hf", "--images", "toy/test-images-idx3-ubyte",
			"--texts", "texts.txt", "-o", "emb-oa.safetensors", "-q")
		// The same random model in the other naming: the same numbers.
		for _, name := range []string{"text_embeddings", "logits"} {
			a, _ := ehReadTensor(t, c.path("emb.safetensors"), name)
			b, _ := ehReadTensor(t, c.path("emb-oa.safetensors"), name)
			want := make([]float32, len(a))
			for i, v := range a {
				want[i] = float32(v)
			}
			ehClose(t, name, b[:len(a)], want, 1e-4)
		}
		labels, shape := ehReadTensor(t, c.path("emb-oa.safetensors"), "labels")
		if !slices.Equal(shape, []int64{9}) || labels[8] != 2 {
			t.Errorf("labels %v %v (from the labels file beside the images)", labels, shape)
		}
	})

	t.Run("embed ViT", func(t *testing.T) {
		out, _ := c.ok(t, "embed", "--model", "vit", "--images", "imgs", "-o", "emb-vit.safetensors", "--json")
		var sum embedSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Images != 6 || sum.Dim != 16 || sum.ModelType != "vit" {
			t.Errorf("summary %q (%v)", out, err)
		}
		_, shape := ehReadTensor(t, c.path("emb-vit.safetensors"), "logits")
		if !slices.Equal(shape, []int64{6, 3}) {
			t.Errorf("ViT classifier logits shape %v", shape)
		}
		c.fails(t, "no text encoder", "embed", "--model", "vit", "--texts", "texts.txt", "-o", "x.safetensors")
	})

	t.Run("head zeroshot", func(t *testing.T) {
		ehWriteFile(t, c.path("tmpl.txt"), []byte("# mine\na photo of a {}.\na drawing of a {}.\n"))
		out, _ := c.ok(t, "head", "zeroshot", "--model", "clip-hf", "--dataset", "./toy", "--templates", "tmpl.txt", "-o", "zs.safetensors", "--json")
		var sum headSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Classes != 3 || sum.Templates != 2 || sum.TemplatesSource != "tmpl.txt" || !sum.Normalize {
			t.Errorf("summary %q (%v)", out, err)
		}
		h, err := heads.Load(c.path("zs.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := heads.ZeroShot(hf, tok, []string{"cat", "dog", "bird"}, []string{"a photo of a {}.", "a drawing of a {}."}, heads.ZeroShotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float64, len(h.Weight))
		for i, v := range h.Weight {
			got[i] = float64(v)
		}
		ehClose(t, "head weight", got, want.Weight, 1e-5)
		if !slices.Equal(h.Classes, []string{"cat", "dog", "bird"}) || h.Scale != want.Scale || h.Meta[heads.MetaType] != heads.TypeZeroShot || h.Meta[heads.MetaDataset] != "toy" {
			t.Errorf("head %v %v %v", h.Classes, h.Scale, h.Meta)
		}

		// Shipped templates, found by the dataset's name.
		out, _ = c.ok(t, "head", "zeroshot", "--model", "clip-oa.safetensors", "--tokenizer", "clip-hf", "--dataset", "cifar10", "--data", "data", "-o", "zs-cifar.safetensors", "--json")
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Templates != 18 || sum.TemplatesSource != "builtin:cifar10" {
			t.Errorf("summary %q (%v)", out, err)
		}
		// No templates for "toy": the fallback, with a notice.
		_, errOut := c.ok(t, "head", "zeroshot", "--model", "clip-hf", "--dataset", "./toy", "-o", "zs-fallback.safetensors")
		if !strings.Contains(errOut, `"a photo of a {}."`) || !strings.Contains(errOut, "--templates") {
			t.Errorf("no fallback notice: %q", errOut)
		}
		ehWriteFile(t, c.path("bad.txt"), []byte("a photo of a cat\n"))
		c.fails(t, "line 1", "head", "zeroshot", "--model", "clip-hf", "--dataset", "./toy", "--templates", "bad.txt", "-o", "zs-bad.safetensors")
		c.fails(t, "already exists", "head", "zeroshot", "--model", "clip-hf", "--dataset", "./toy", "-o", "zs.safetensors")
		c.fails(t, "ViT", "head", "zeroshot", "--model", "vit", "--dataset", "./toy", "-o", "zs-vit.safetensors")
		c.fails(t, "no CLIP tokenizer", "head", "zeroshot", "--model", "clip-oa.safetensors", "--dataset", "./toy", "-o", "zs-notok.safetensors")
		if _, err := os.Stat(c.path("zs-bad.safetensors")); err == nil {
			t.Error("a failed run left its output")
		}
	})

	t.Run("head probe", func(t *testing.T) {
		out, _ := c.ok(t, "head", "probe", "--model", "vit", "--dataset", "./toy", "--limit", "15", "--l2", "1e-3", "-o", "probe.safetensors", "--json")
		var sum headSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Examples != 15 || sum.Fit == nil || sum.Split != "train" || sum.Dim != 16 {
			t.Fatalf("summary %q (%v)", out, err)
		}
		h, err := heads.Load(c.path("probe.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Bias) != 3 || h.Scale != 1 || h.Normalize || h.Meta[heads.MetaFeatures] != heads.FeaturesViT || h.Meta["head.limit"] != "15" {
			t.Errorf("probe head: bias %v scale %v normalize %v meta %v", h.Bias, h.Scale, h.Normalize, h.Meta)
		}
		// A CLIP probe with normalized features.
		c.ok(t, "head", "probe", "--model", "clip-oa.safetensors", "--dataset", "./toy", "--normalize", "-o", "probe-clip.safetensors", "-q")
		if h, err := heads.Load(c.path("probe-clip.safetensors")); err != nil || !h.Normalize || h.Dim != 12 {
			t.Errorf("CLIP probe: %v", err)
		}
		c.fails(t, "--l2", "head", "probe", "--model", "vit", "--dataset", "./toy", "--l2", "-1", "-o", "p.safetensors")
	})

	t.Run("head templates", func(t *testing.T) {
		out, _ := c.ok(t, "head", "templates", "gtsrb")
		if !strings.Contains(out, `a zoomed in photo of a "{}" traffic sign.`) {
			t.Errorf("templates gtsrb: %q", out)
		}
		out, _ = c.ok(t, "head", "templates")
		if !strings.Contains(out, "fashion-mnist") {
			t.Errorf("templates: %q", out)
		}
		c.fails(t, "no templates shipped", "head", "templates", "svhn")
	})
}
