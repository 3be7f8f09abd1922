package models_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/vit"
)

// TestConfigWithFewerLayers: a config.json that gives fewer layers than
// the checkpoint holds is an error naming the tensors that would go
// unused, for every model family, instead of a silently truncated model.
func TestConfigWithFewerLayers(t *testing.T) {
	vitConfig := vit.DefaultConfig()
	vitConfig.HiddenSize, vitConfig.NumHiddenLayers, vitConfig.NumAttentionHeads, vitConfig.IntermediateSize = 8, 2, 2, 16
	vitConfig.ImageSize, vitConfig.PatchSize = 8, 4
	clipConfig := clip.Config{Naming: clip.HF,
		Vision:   &clip.VisionConfig{Tower: clip.Tower{Width: 16, Layers: 2, Heads: 2, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 16, PatchSize: 8, Channels: 3},
		Text:     &clip.TextConfig{Tower: clip.Tower{Width: 8, Layers: 2, Heads: 2, MLP: 16, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 6, VocabSize: 20},
		EmbedDim: 4}
	llamaConfig, err := llama.ParseConfig([]byte(`{"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":20,"max_position_embeddings":8}`))
	if err != nil {
		t.Fatal(err)
	}
	saveViT := func(dir string) error {
		m, err := vit.NewRandom(vitConfig, 1)
		if err != nil {
			return err
		}
		return m.Save(dir, checkpoint.WriteOptions{})
	}
	saveCLIP := func(dir string) error {
		m, err := clip.NewRandom(clipConfig, 1)
		if err != nil {
			return err
		}
		return m.Save(dir, checkpoint.WriteOptions{})
	}
	tests := []struct {
		name string
		save func(dir string) error
		key  []string // the layer count in config.json
		load func(dir string) error
		want []string // besides the folder
	}{
		{"vit", saveViT, []string{"num_hidden_layers"}, func(dir string) error { _, err := vit.Load(dir); return err }, unusedBlocks("vit.encoder.layer.1.")},
		{"vit image encoder", saveViT, []string{"num_hidden_layers"}, func(dir string) error { _, err := encoder.Load(dir); return err }, unusedBlocks("vit.encoder.layer.1.")},
		{"clip", saveCLIP, []string{"text_config", "num_hidden_layers"}, func(dir string) error { _, err := clip.Load(dir); return err }, configDisagrees("text config")},
		{"clip image encoder", saveCLIP, []string{"vision_config", "num_hidden_layers"}, func(dir string) error { _, err := encoder.Load(dir); return err }, configDisagrees("vision config")},
		{"llama", func(dir string) error {
			m, err := llama.NewRandom(llamaConfig, 1)
			if err != nil {
				return err
			}
			return m.Save(dir, checkpoint.WriteOptions{})
		}, []string{"num_hidden_layers"}, func(dir string) error { _, err := llama.Load(dir); return err }, unusedBlocks("model.layers.1.")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			if err := tc.save(dir); err != nil {
				t.Fatal(err)
			}
			if err := tc.load(dir); err != nil {
				t.Fatalf("the saved model does not load: %v", err)
			}
			setConfig(t, filepath.Join(dir, "config.json"), tc.key, 1)
			err := tc.load(dir)
			if err == nil {
				t.Fatal("a config.json with 1 of 2 layers loaded")
			}
			for _, w := range append([]string{dir}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// unusedBlocks is what ReadWeights says of the tensors of a block past the
// configuration's last.
func unusedBlocks(block string) []string {
	return []string{block, "would go unused", "has 1 blocks", "at least 2", "num_hidden_layers"}
}

// configDisagrees is what CLIP's configuration reader says, before the
// weights are read, when a tower's layer count disagrees with the weights.
func configDisagrees(tower string) []string {
	return []string{"config.json", tower, "num_hidden_layers 1", "disagrees with the weights"}
}

// setConfig sets the number at key (a path into nested objects) of a JSON
// file.
func setConfig(t *testing.T, path string, key []string, v int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	m := root
	for _, k := range key[:len(key)-1] {
		m = m[k].(map[string]any)
	}
	m[key[len(key)-1]] = v
	if data, err = json.Marshal(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
