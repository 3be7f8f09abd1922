package heads

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
)

// byteTokenizer is a CLIP tokenizer without merges: the 256 byte symbols,
// the same with "</w>", then the start and end tokens (ids 512 and 513, the
// end token highest as in CLIP's vocabulary).
func byteTokenizer(t testing.TB) *clip.Tokenizer {
	t.Helper()
	tok, err := clip.NewByteTokenizer()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tinyCLIPConfig() clip.Config {
	return clip.Config{Naming: clip.HF,
		Vision:   &clip.VisionConfig{Tower: clip.Tower{Width: 16, Layers: 1, Heads: 2, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 16, PatchSize: 8, Channels: 3},
		Text:     &clip.TextConfig{Tower: clip.Tower{Width: 8, Layers: 1, Heads: 2, MLP: 16, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 40, VocabSize: 514},
		EmbedDim: 12}
}

func TestZeroShotMatchesIndependentComputation(t *testing.T) {
	m, err := clip.NewRandom(tinyCLIPConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	tok := byteTokenizer(t)
	classes := []string{"cat", "dog", "t-shirt/top"}
	templates := []string{"a photo of a {}.", "a blurry {} in the wild", "{}"}
	var progress [][2]int
	h, err := ZeroShot(m, tok, classes, templates, ZeroShotOptions{
		TextOptions: TextOptions{BatchSize: 4, Progress: func(done, total int) { progress = append(progress, [2]int{done, total}) }},
		Dataset:     "pets", Model: "tiny-clip", TemplatesSource: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	// 9 prompts in batches of 4: the last batch padded.
	if !slices.Equal(progress, [][2]int{{4, 9}, {8, 9}, {9, 9}}) {
		t.Errorf("progress %v", progress)
	}
	if h.Dim != 12 || !slices.Equal(h.Classes, classes) || h.Bias != nil || !h.Normalize {
		t.Fatalf("head %+v", h)
	}
	if want := float32(1 / 0.07); math.Abs(float64(h.Scale-want)) > 1e-4 {
		t.Errorf("Scale = %v, want exp(logit_scale) = %v", h.Scale, want)
	}
	var tj []string
	if err := json.Unmarshal([]byte(h.Meta[MetaTemplates]), &tj); err != nil || !slices.Equal(tj, templates) {
		t.Errorf("Meta templates %q (%v)", h.Meta[MetaTemplates], err)
	}
	if h.Meta[MetaType] != TypeZeroShot || h.Meta[MetaDataset] != "pets" || h.Meta[MetaModel] != "tiny-clip" ||
		h.Meta[MetaFeatures] != FeaturesCLIP || h.Meta[MetaTemplatesSource] != "test" {
		t.Errorf("Meta %v", h.Meta)
	}

	// Independently: each prompt encoded alone, normalized, averaged and
	// normalized in float64.
	for c, class := range classes {
		mean := make([]float64, 12)
		for _, tmpl := range templates {
			text := strings.ReplaceAll(tmpl, "{}", class)
			ids, _, err := tok.TokenizeLength(text, 40, true)
			if err != nil {
				t.Fatal(err)
			}
			idt, err := clip.TokenIDs([][]int{ids})
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.EncodeText(idt)
			if err != nil {
				t.Fatal(err)
			}
			e := tensors.MustCopyFlatData[float32](out)
			var n float64
			for _, v := range e {
				n += float64(v) * float64(v)
			}
			n = math.Sqrt(n)
			for j, v := range e {
				mean[j] += float64(v) / n / float64(len(templates))
			}
		}
		var n float64
		for _, v := range mean {
			n += v * v
		}
		n = math.Sqrt(n)
		for j, v := range mean {
			if got := float64(h.Weight[c*12+j]); math.Abs(got-v/n) > 1e-5 {
				t.Fatalf("class %q [%d] = %v, want %v", class, j, got, v/n)
			}
		}
	}

	// With one template the head's logits are CLIP's own logits_per_image.
	one, err := ZeroShot(m, tok, classes, templates[:1], ZeroShotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	pix := make([]float32, 2*16*16*3)
	for i := range pix {
		pix[i] = float32(r.NormFloat64())
	}
	pixels, _ := models.Pixels(pix, 2, 16, 16)
	rows := make([][]int, len(classes))
	for i, c := range classes {
		rows[i], _, _ = tok.TokenizeLength(Prompt(templates[0], c), 40, true)
	}
	ids, _ := clip.TokenIDs(rows)
	logits, img, _, err := m.Logits(pixels, ids)
	if err != nil {
		t.Fatal(err)
	}
	got, err := one.Logits(tensors.MustCopyFlatData[float32](img), 2)
	if err != nil {
		t.Fatal(err)
	}
	want := tensors.MustCopyFlatData[float32](logits)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Fatalf("head logits %v, CLIP logits %v", got, want)
		}
	}
}

func TestZeroShotErrors(t *testing.T) {
	m, err := clip.NewRandom(tinyCLIPConfig(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tok := byteTokenizer(t)
	for _, c := range []struct {
		name               string
		classes, templates []string
		o                  ZeroShotOptions
		want               string
	}{
		{"no classes", nil, []string{"{}"}, ZeroShotOptions{}, "no classes"},
		{"no templates", []string{"a"}, nil, ZeroShotOptions{}, "no templates"},
		{"no placeholder", []string{"a"}, []string{"a photo"}, ZeroShotOptions{}, "no {}"},
		{"bad scale", []string{"a"}, []string{"{}"}, ZeroShotOptions{Scale: -1}, "scale"},
	} {
		if _, err := ZeroShot(m, tok, c.classes, c.templates, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// A model whose vocabulary is smaller than the tokenizer's.
	small := tinyCLIPConfig()
	small.Text.VocabSize = 100
	ms, err := clip.NewRandom(small, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ZeroShot(ms, tok, []string{"a"}, []string{"{}"}, ZeroShotOptions{}); err == nil || !strings.Contains(err.Error(), "do not belong together") {
		t.Errorf("small vocabulary: error %v", err)
	}
	// A text tower without logit_scale needs an explicit scale.
	textOnly := tinyCLIPConfig()
	textOnly.Vision = nil
	mt, err := clip.NewRandom(textOnly, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ZeroShot(mt, tok, []string{"a"}, []string{"{}"}, ZeroShotOptions{}); err == nil || !strings.Contains(err.Error(), "logit_scale") {
		t.Errorf("text tower alone: error %v", err)
	}
	h, err := ZeroShot(mt, tok, []string{"a", "b"}, []string{"{}"}, ZeroShotOptions{Scale: 100})
	if err != nil || h.Scale != 100 {
		t.Errorf("text tower with scale 100: %v, %v", h, err)
	}
}
