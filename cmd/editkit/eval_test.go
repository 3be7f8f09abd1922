package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// evTinyViT is the tiny ViT of the eval and search tests: 32×32 images of
// 8×8 patches, width 32, 2 blocks.
func evTinyViT() vit.Config {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 32, 2, 4, 64
	c.ImageSize, c.PatchSize = 32, 8
	return c
}

// evSaveViT writes weights w of config c as a ViT checkpoint folder.
func evSaveViT(t *testing.T, c vit.Config, w models.Weights, dir string) {
	t.Helper()
	m, err := vit.New(c, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// evWriteIDX writes a split of a dataset folder as IDX files: RGB images
// [n, h, w, 3] and their labels, and the class names.
func evWriteIDX(t *testing.T, dir, split string, h, w int, pix []uint8, labels []int, classes int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := len(labels)
	var img bytes.Buffer
	binary.Write(&img, binary.BigEndian, []uint32{0x0804, uint32(n), uint32(h), uint32(w), 3})
	img.Write(pix)
	var lab bytes.Buffer
	binary.Write(&lab, binary.BigEndian, []uint32{0x0801, uint32(n)})
	for _, l := range labels {
		lab.WriteByte(byte(l))
	}
	var names []string
	for k := range classes {
		names = append(names, "class"+string(rune('A'+k)))
	}
	for name, data := range map[string][]byte{
		split + "-images-idx4-ubyte": img.Bytes(),
		split + "-labels-idx1-ubyte": lab.Bytes(),
		"classes.txt":                []byte(strings.Join(names, "\n") + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// evNoise returns n random RGB images of size×size.
func evNoise(r *rand.Rand, n, size int) []uint8 {
	pix := make([]uint8, n*size*size*3)
	for i := range pix {
		pix[i] = uint8(r.IntN(256))
	}
	return pix
}

// evFeatures runs the ViT encoder (pooled output) on images as the CLI
// preprocesses them.
func evFeatures(t *testing.T, m *vit.Model, pix []uint8, n int) []float32 {
	t.Helper()
	size := m.Config.ImageSize
	pre := datasets.ViT(size)
	flat := make([]float32, 0, n*size*size*3)
	for i := range n {
		img := datasets.Image{Height: size, Width: size, Channels: 3, Pix: pix[i*size*size*3 : (i+1)*size*size*3]}
		v, err := pre.Tensor(img)
		if err != nil {
			t.Fatal(err)
		}
		flat = append(flat, v...)
	}
	px, err := models.Pixels(flat, n, size, size)
	if err != nil {
		t.Fatal(err)
	}
	pooled, _, err := m.Run(px)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](pooled)
}

// evRun runs the CLI in-process.
func evRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

// TestEvalKnownAccuracy evaluates a random tiny ViT with a head built so
// that its answer is known: each class is one noise image, the head's rows
// are the model's features of those images (cosine similarity), so an image
// is classified as the class whose image it is. Three of ten test examples
// carry the image of another class than their label: accuracy 7/10.
func TestEvalKnownAccuracy(t *testing.T) {
	dir := t.TempDir()
	c := evTinyViT()
	m, err := vit.NewRandom(c, 3)
	if err != nil {
		t.Fatal(err)
	}
	modelDir := filepath.Join(dir, "model")
	if err := m.Save(modelDir, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	const k, size = 3, 32
	protos := evNoise(rand.New(rand.NewPCG(1, 2)), k, size)
	sz := size * size * 3
	labels := []int{0, 1, 2, 0, 1, 2, 0, 1, 2, 0}
	shown := []int{0, 1, 2, 0, 2, 2, 1, 1, 0, 0} // examples 4, 6 and 8 show another class
	var pix []uint8
	for _, s := range shown {
		pix = append(pix, protos[s*sz:(s+1)*sz]...)
	}
	data := filepath.Join(dir, "data")
	evWriteIDX(t, filepath.Join(data, "toy"), "test", size, size, pix, labels, k)
	evWriteIDX(t, filepath.Join(data, "toy"), "train", size, size, pix, labels, k)
	feats := evFeatures(t, m, protos, k)
	head := &heads.Head{Classes: []string{"classA", "classB", "classC"}, Dim: c.HiddenSize, Weight: feats, Scale: 1, Normalize: true}
	headPath := filepath.Join(dir, "toy-head.safetensors")
	if err := head.Save(headPath, false); err != nil {
		t.Fatal(err)
	}

	md := filepath.Join(dir, "table.md")
	out, errOut, code := evRun(t, "eval", "--model", modelDir, "--dataset", "toy", "--head", headPath, "--data", data,
		"--batch", "4", "--json", "--md", md, "--finetuned", modelDir)
	if code != 0 {
		t.Fatalf("eval failed: %s", errOut)
	}
	var rep evalReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, out)
	}
	if len(rep.Results) != 1 || rep.Results[0].Correct != 7 || rep.Results[0].Total != 10 || rep.Results[0].Accuracy != 0.7 {
		t.Errorf("results %+v, want 7/10", rep.Results)
	}
	if rep.Kind != "vit" || rep.Split != "test" {
		t.Errorf("kind %q split %q", rep.Kind, rep.Split)
	}
	// The model is its own "fine-tuned" model: normalized accuracy 1.
	if r := rep.Table.Rows[0]; math.Abs(r.Normalized["toy"]-1) > 1e-12 || rep.Finetuned["toy"].Accuracy != 0.7 {
		t.Errorf("normalized %+v, fine-tuned %+v", r, rep.Finetuned)
	}
	table, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(table), "| model | 70.0 (100.0) | 70.0 (100.0) |") {
		t.Errorf("markdown table (%v):\n%s", err, table)
	}
	// Intervals: the accuracy's, and the paired difference with the
	// fine-tuned model, here the same model: exactly 0.
	for _, want := range []string{"| model | 70.0 [", "| model − fine-tuned (--finetuned) |", "| model | +0.0 [+0.0, +0.0] | +0.0 [+0.0, +0.0] |"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("markdown lacks %q:\n%s", want, table)
		}
	}
	if iv := rep.Table.Rows[0].Interval["toy"]; !(iv.Lo < 0.7 && iv.Hi > 0.7 && iv.Lo >= 0.3) {
		t.Errorf("accuracy interval %+v", iv)
	}

	// --limit and --finetuned-acc; plain output is the markdown table.
	out, errOut, code = evRun(t, "eval", "--model", modelDir, "--dataset", "toy", "--head", headPath, "--data", data,
		"--limit", "5", "--finetuned-acc", "toy=0.9", "-q")
	if code != 0 || !strings.Contains(out, "| model | 80.0 (88.9) | 80.0 (88.9) |") {
		t.Errorf("--limit 5 (4 of 5 right) with fine-tuned 0.9: code %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dataset", "toy"}, "1 --dataset"},
		{[]string{"--dataset", "toy", "--head", headPath, "--finetuned-acc", "toy=80"}, "percentage"},
		{[]string{"--dataset", "toy", "--head", headPath, "--finetuned-acc", "other=0.8"}, "no task"},
		{[]string{"--dataset", "toy", "--head", headPath, "--split", "bogus"}, "--split"},
		{[]string{"--dataset", "toy", "--head", modelDir + "/model.safetensors"}, "not a classification head"},
	} {
		_, errOut, code := evRun(t, append([]string{"eval", "--model", modelDir, "--data", data}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("eval %v: code %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}
