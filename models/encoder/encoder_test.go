package encoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/internal/reftest"
)

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	for _, c := range []struct {
		name     string
		family   Family
		features string
		pre      func(int) datasets.Preprocess
	}{
		{"hf-vit", ViT, heads.FeaturesViT, datasets.ViT},
		{"hf-clip", CLIP, heads.FeaturesCLIP, datasets.CLIP},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, reftest.Dir(c.name), dir)
			enc, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Family != c.family || enc.Features() != c.features || enc.Path != dir {
				t.Fatalf("loaded %s (%s) from %s", enc.Family, enc.Features(), enc.Path)
			}
			size := enc.Preprocess.Size
			if want := c.pre(size); enc.Preprocess != want {
				t.Errorf("preprocess %+v, want %+v", enc.Preprocess, want)
			}
			if len(enc.Weights) != len(enc.Specs) {
				t.Errorf("%d weights for %d specs", len(enc.Weights), len(enc.Specs))
			}
			px, err := models.Pixels(make([]float32, 2*size*size*3), 2, size, size)
			if err != nil {
				t.Fatal(err)
			}
			defer px.FinalizeAll()
			f, err := enc.Encode(nil, px)
			if err != nil {
				t.Fatal(err)
			}
			if len(f) != 2*enc.Dim {
				t.Errorf("%d feature values for 2 images of dimension %d", len(f), enc.Dim)
			}
			enc.Close()

			// preprocessor_config.json beside the weights sets mean and std.
			cfg := `{"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}`
			if err := os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			enc, err = Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Preprocess.Mean != [3]float32{0.1, 0.2, 0.3} || enc.Preprocess.Std != [3]float32{0.4, 0.5, 0.6} {
				t.Errorf("preprocess %+v ignores preprocessor_config.json", enc.Preprocess)
			}
		})
	}
}
