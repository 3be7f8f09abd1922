package train

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/internal/reftest"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// finetuneAndWrite loads in, fine-tunes it for a few steps on 32×32
// quadrants through a random head, writes the result to out and returns the
// trained weights.
func finetuneAndWrite(t *testing.T, in, out string, wo WriteOptions) (*encoder.Encoder, models.Weights) {
	t.Helper()
	enc, err := encoder.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 16, 4)
	h := randomHead(4, enc.Dim, true, 4)
	h.Classes = slices.Clone(ds.Classes())
	o := Recipe()
	o.LearningRate, o.Warmup, o.BatchSize, o.Steps = 1e-3, 1, 8, 3
	res, err := Finetune(enc, h, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFinetuned(in, out, res.Weights, wo); err != nil {
		t.Fatal(err)
	}
	return enc, res.Weights
}

// checkOutput checks that out holds exactly in's tensors (names, shapes,
// dtypes, order), the trained ones changed, all others byte-identical.
func checkOutput(t *testing.T, in, out string, trained models.Weights) {
	t.Helper()
	a, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := checkpoint.CheckCompatible(a, b); err != nil {
		t.Fatal(err)
	}
	ta, tb := a.Tensors(), b.Tensors()
	if len(ta) != len(tb) {
		t.Fatalf("%d tensors in, %d out", len(ta), len(tb))
	}
	same, changed := 0, 0
	for i, x := range ta {
		y := tb[i]
		if x.Name != y.Name || x.DType != y.DType || !slices.Equal(x.Shape, y.Shape) {
			t.Fatalf("tensor %d: %s %s %v in, %s %s %v out", i, x.Name, x.DType, x.Shape, y.Name, y.DType, y.Shape)
		}
		ra, _ := a.ReadRaw(x.Name, nil)
		rb, _ := b.ReadRaw(x.Name, nil)
		if w, ok := trained[x.Name]; ok {
			if bytes.Equal(ra, rb) {
				t.Errorf("trained tensor %s is unchanged", x.Name)
			}
			got, _, err := b.ReadFloat32(x.Name, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := tensors.MustCopyFlatData[float32](w)
			tol := 0.0
			if x.DType != checkpoint.F32 {
				tol = 1e-2
			}
			for j := range want {
				if d := float64(got[j] - want[j]); d > tol*(1+float64(abs32(want[j]))) || -d > tol*(1+float64(abs32(want[j]))) {
					t.Fatalf("%s[%d] = %g written, %g trained", x.Name, j, got[j], want[j])
				}
			}
			changed++
		} else {
			if !bytes.Equal(ra, rb) {
				t.Errorf("untouched tensor %s differs", x.Name)
			}
			same++
		}
	}
	if changed != len(trained) {
		t.Errorf("%d trained tensors written, %d trained", changed, len(trained))
	}
	t.Logf("%s: %d tensors trained, %d copied byte for byte", filepath.Base(in), changed, same)
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

func TestWriteFinetuned(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, in string
		family   encoder.Family
		frozen   []string // tensors that must not be trained
		side     []string
	}{
		{"hf-vit", reftest.Dir("hf-vit"), encoder.ViT, []string{"classifier.weight", "classifier.bias"}, []string{"config.json"}},
		{"hf-clip", reftest.Dir("hf-clip"), encoder.CLIP, []string{"logit_scale", "text_projection.weight", "text_model.embeddings.token_embedding.weight"}, []string{"config.json"}},
		{"openai-clip", filepath.Join(reftest.Dir("openai-clip"), "open_clip_model.safetensors"), encoder.CLIP, []string{"logit_scale", "text_projection", "token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight"}, []string{"open_clip_config.json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name)
			enc, trained := finetuneAndWrite(t, c.in, out, WriteOptions{Metadata: map[string]string{"editkit.finetuned": "test"}})
			if enc.Family != c.family {
				t.Errorf("family %s, want %s", enc.Family, c.family)
			}
			for _, n := range c.frozen {
				if _, ok := trained[n]; ok {
					t.Errorf("%s was trained", n)
				}
			}
			checkOutput(t, c.in, out, trained)
			for _, f := range c.side {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("side file %s not copied: %v", f, err)
				}
			}
			// The output loads as the same model, with the trained weights.
			back, err := encoder.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if back.Family != enc.Family || back.Dim != enc.Dim || len(back.Specs) != len(enc.Specs) {
				t.Fatalf("reloaded: %s %d-d with %d tensors", back.Family, back.Dim, len(back.Specs))
			}
			for name, w := range trained {
				if !slices.Equal(tensors.MustCopyFlatData[float32](back.Weights[name]), tensors.MustCopyFlatData[float32](w)) {
					t.Fatalf("reloaded %s differs from the trained tensor", name)
				}
			}
			ck, _ := checkpoint.Open(out)
			if ck.Metadata["editkit.finetuned"] != "test" {
				t.Errorf("metadata %v", ck.Metadata)
			}
			ck.Close()
			// Refuses to overwrite without Force.
			if err := WriteFinetuned(c.in, out, trained, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "exists") {
				t.Errorf("overwrite without force: %v", err)
			}
		})
	}

	// A bfloat16 input stays bfloat16; a .safetensors output works too.
	bf := filepath.Join(dir, "vit-bf16")
	if err := WriteFinetuned(reftest.Dir("hf-vit"), bf, nil, WriteOptions{DType: "bfloat16"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "vit-bf16-ft.safetensors")
	_, trained := finetuneAndWrite(t, bf, out, WriteOptions{})
	checkOutput(t, bf, out, trained)

	// Trained tensors that are not in the input are refused, and nothing is left.
	bad := models.Weights{"nope": tensors.FromFlatDataAndDimensions([]float32{1}, 1)}
	if err := WriteFinetuned(reftest.Dir("hf-vit"), filepath.Join(dir, "bad"), bad, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown tensor: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a failed write left its output")
	}
}
