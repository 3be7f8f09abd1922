package checkpoint

import (
	"fmt"
	"maps"
	"testing"
)

// blockNames returns name templates (with %d for the block index) expanded
// for blocks 0..n-1.
func blockNames(n int, templates ...string) []string {
	var out []string
	for i := range n {
		for _, tpl := range templates {
			out = append(out, fmt.Sprintf(tpl, i))
		}
	}
	return out
}

func TestLayoutFamilies(t *testing.T) {
	type want struct {
		name  string
		depth Depth
	}
	tests := []struct {
		name   string
		names  []string
		family string
		stacks map[string]int
		checks []want
	}{
		{
			name: "HF ViT",
			names: append(blockNames(12,
				"vit.encoder.layer.%d.attention.attention.query.weight",
				"vit.encoder.layer.%d.output.dense.bias"),
				"vit.embeddings.cls_token", "vit.embeddings.patch_embeddings.projection.weight",
				"vit.layernorm.weight", "classifier.weight", "vit.pooler.dense.weight"),
			family: "hf-vit",
			stacks: map[string]int{"vit.encoder.layer.": 12},
			checks: []want{
				{"vit.encoder.layer.0.attention.attention.query.weight", Depth{"vit.encoder.layer.", 0, 12}},
				{"vit.encoder.layer.11.output.dense.bias", Depth{"vit.encoder.layer.", 11, 12}},
				{"vit.embeddings.cls_token", Depth{}},
				{"vit.layernorm.weight", Depth{}},
				{"classifier.weight", Depth{}},
			},
		},
		{
			name: "HF CLIP, two towers",
			names: append(append(blockNames(12,
				"vision_model.encoder.layers.%d.self_attn.k_proj.weight",
				"vision_model.encoder.layers.%d.mlp.fc1.weight"),
				blockNames(6, "text_model.encoder.layers.%d.self_attn.q_proj.weight")...),
				"vision_model.embeddings.class_embedding", "vision_model.pre_layrnorm.weight",
				"vision_model.post_layernorm.weight", "visual_projection.weight", "text_projection.weight",
				"text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight", "logit_scale"),
			family: "hf-clip",
			stacks: map[string]int{"vision_model.encoder.layers.": 12, "text_model.encoder.layers.": 6},
			checks: []want{
				{"vision_model.encoder.layers.3.mlp.fc1.weight", Depth{"vision_model.encoder.layers.", 3, 12}},
				{"text_model.encoder.layers.5.self_attn.q_proj.weight", Depth{"text_model.encoder.layers.", 5, 6}},
				{"vision_model.pre_layrnorm.weight", Depth{}},
				{"visual_projection.weight", Depth{}},
				{"logit_scale", Depth{}},
			},
		},
		{
			name: "HF CLIP vision tower under a prefix",
			names: append(blockNames(4, "model.vision_model.encoder.layers.%d.layer_norm1.weight"),
				"model.vision_model.embeddings.patch_embedding.weight"),
			family: "hf-clip",
			stacks: map[string]int{"model.vision_model.encoder.layers.": 4},
			checks: []want{
				{"model.vision_model.encoder.layers.2.layer_norm1.weight", Depth{"model.vision_model.encoder.layers.", 2, 4}},
			},
		},
		{
			name: "OpenAI / open_clip CLIP",
			names: append(append(blockNames(12,
				"visual.transformer.resblocks.%d.attn.in_proj_weight",
				"visual.transformer.resblocks.%d.ln_1.weight"),
				blockNames(8, "transformer.resblocks.%d.mlp.c_fc.weight")...),
				"visual.class_embedding", "visual.positional_embedding", "visual.conv1.weight",
				"visual.ln_pre.weight", "visual.ln_post.bias", "visual.proj",
				"token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection", "logit_scale"),
			family: "openai-clip",
			stacks: map[string]int{"visual.transformer.resblocks.": 12, "transformer.resblocks.": 8},
			checks: []want{
				{"visual.transformer.resblocks.0.attn.in_proj_weight", Depth{"visual.transformer.resblocks.", 0, 12}},
				{"visual.transformer.resblocks.11.ln_1.weight", Depth{"visual.transformer.resblocks.", 11, 12}},
				{"transformer.resblocks.7.mlp.c_fc.weight", Depth{"transformer.resblocks.", 7, 8}},
				{"visual.ln_pre.weight", Depth{}},
				{"visual.ln_post.bias", Depth{}},
				{"visual.proj", Depth{}},
				{"text_projection", Depth{}},
				{"token_embedding.weight", Depth{}},
			},
		},
		{
			name: "open_clip under model.",
			names: append(blockNames(3, "model.visual.transformer.resblocks.%d.ln_2.bias"),
				"model.visual.proj"),
			family: "openai-clip",
			stacks: map[string]int{"model.visual.transformer.resblocks.": 3},
			checks: []want{
				{"model.visual.transformer.resblocks.1.ln_2.bias", Depth{"model.visual.transformer.resblocks.", 1, 3}},
				{"model.visual.proj", Depth{}},
			},
		},
		{
			name: "LLaMA",
			names: append(blockNames(32,
				"model.layers.%d.self_attn.q_proj.weight",
				"model.layers.%d.mlp.down_proj.weight",
				"model.layers.%d.input_layernorm.weight"),
				"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"),
			family: "llama",
			stacks: map[string]int{"model.layers.": 32},
			checks: []want{
				{"model.layers.0.self_attn.q_proj.weight", Depth{"model.layers.", 0, 32}},
				{"model.layers.31.input_layernorm.weight", Depth{"model.layers.", 31, 32}},
				{"model.layers.10.mlp.down_proj.weight", Depth{"model.layers.", 10, 32}},
				{"model.embed_tokens.weight", Depth{}},
				{"model.norm.weight", Depth{}},
				{"lm_head.weight", Depth{}},
			},
		},
		{
			name: "GPT-2 bare",
			names: append(blockNames(12, "h.%d.attn.c_attn.weight", "h.%d.ln_1.weight"),
				"wte.weight", "wpe.weight", "ln_f.weight"),
			family: "gpt2",
			stacks: map[string]int{"h.": 12},
			checks: []want{
				{"h.0.attn.c_attn.weight", Depth{"h.", 0, 12}},
				{"h.11.ln_1.weight", Depth{"h.", 11, 12}},
				{"wte.weight", Depth{}},
				{"ln_f.weight", Depth{}},
			},
		},
		{
			name: "GPT-2 under transformer.",
			names: append(blockNames(24, "transformer.h.%d.mlp.c_proj.weight"),
				"transformer.wte.weight", "transformer.ln_f.bias", "lm_head.weight"),
			family: "gpt2",
			stacks: map[string]int{"transformer.h.": 24},
			checks: []want{
				{"transformer.h.23.mlp.c_proj.weight", Depth{"transformer.h.", 23, 24}},
				{"transformer.wte.weight", Depth{}},
				{"lm_head.weight", Depth{}},
			},
		},
		{
			name:   "blocks counted from the highest index, gaps allowed",
			names:  []string{"model.layers.0.w", "model.layers.7.w"},
			family: "llama",
			stacks: map[string]int{"model.layers.": 8},
			checks: []want{{"model.layers.7.w", Depth{"model.layers.", 7, 8}}},
		},
		{
			name:   "unknown architecture",
			names:  []string{"encoder.block0.w", "decoder.w", "layers.x.w"},
			family: "none",
			stacks: map[string]int{},
			checks: []want{{"encoder.block0.w", Depth{}}, {"decoder.w", Depth{}}},
		},
		{
			name:   "no tensors",
			family: "none",
			stacks: map[string]int{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLayout(tc.names, "")
			if err != nil {
				t.Fatal(err)
			}
			if l.Family != tc.family {
				t.Errorf("Family = %q, want %q", l.Family, tc.family)
			}
			if got := l.Stacks(); !maps.Equal(got, tc.stacks) {
				t.Errorf("Stacks() = %v, want %v", got, tc.stacks)
			}
			for _, c := range tc.checks {
				got := l.Depth(c.name)
				if got != c.depth {
					t.Errorf("Depth(%s) = %+v, want %+v", c.name, got, c.depth)
				}
				if got.InBlock() != (c.depth.Stack != "") {
					t.Errorf("Depth(%s).InBlock() = %v", c.name, got.InBlock())
				}
			}
			if d := l.Depth("not.a.tensor"); d != (Depth{}) || d.InBlock() {
				t.Errorf("Depth of an unknown name = %+v", d)
			}
			// Every name in a block has a block index below its stack's size.
			for _, n := range tc.names {
				d := l.Depth(n)
				if d.InBlock() && (d.Block < 0 || d.Block >= d.Blocks || tc.stacks[d.Stack] != d.Blocks) {
					t.Errorf("Depth(%s) = %+v inconsistent with stacks %v", n, d, tc.stacks)
				}
			}
		})
	}
}

func TestLayoutCustomPattern(t *testing.T) {
	names := append(append(blockNames(4, "encoder.blocks.%d.attn.w", "encoder.blocks.%d.mlp.w"),
		blockNames(2, "decoder.blocks.%d.attn.w")...),
		"encoder.embed.w", "head.w",
		// These would be detected as LLaMA without the pattern.
		"model.layers.0.x", "model.layers.1.x", "model.layers.2.x", "model.layers.3.x",
		"model.layers.4.x", "model.layers.5.x", "model.layers.6.x", "model.layers.7.x",
		"model.layers.8.x", "model.layers.9.x", "model.layers.10.x")
	tests := []struct {
		name    string
		pattern string
		stacks  map[string]int
		checks  map[string]Depth
	}{
		{"plain capture group", `blocks\.(\d+)\.`,
			map[string]int{"encoder.blocks.": 4, "decoder.blocks.": 2},
			map[string]Depth{
				"encoder.blocks.3.mlp.w":  {"encoder.blocks.", 3, 4},
				"decoder.blocks.1.attn.w": {"decoder.blocks.", 1, 2},
				"encoder.embed.w":         {},
				"model.layers.3.x":        {},
			}},
		{"named group block after another group", `^(encoder|decoder)\.blocks\.(?P<block>\d+)\.`,
			map[string]int{"encoder.blocks.": 4, "decoder.blocks.": 2},
			map[string]Depth{
				"encoder.blocks.0.attn.w": {"encoder.blocks.", 0, 4},
				"decoder.blocks.0.attn.w": {"decoder.blocks.", 0, 2},
				"head.w":                  {},
			}},
		{"anchored single stack", `^encoder\.blocks\.(\d+)`,
			map[string]int{"encoder.blocks.": 4},
			map[string]Depth{
				"encoder.blocks.2.attn.w": {"encoder.blocks.", 2, 4},
				"decoder.blocks.1.attn.w": {},
			}},
		{"index at the start of the match", `layers\.(\d+)`,
			map[string]int{"model.layers.": 11},
			map[string]Depth{"model.layers.10.x": {"model.layers.", 10, 11}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLayout(names, tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if l.Family != "custom" {
				t.Errorf("Family = %q, want custom", l.Family)
			}
			if got := l.Stacks(); !maps.Equal(got, tc.stacks) {
				t.Errorf("Stacks() = %v, want %v", got, tc.stacks)
			}
			for n, want := range tc.checks {
				if got := l.Depth(n); got != want {
					t.Errorf("Depth(%s) = %+v, want %+v", n, got, want)
				}
			}
		})
	}

	errs := []struct {
		name    string
		pattern string
		has     []string
	}{
		{"invalid regex", `blocks\.(\d+`, []string{"--layer-pattern", `blocks\.(\d+`, "missing closing )"}},
		{"no capture group", `blocks\.\d+\.`, []string{"--layer-pattern", "capture group"}},
		{"matches nothing", `^vit\.layer\.(\d+)\.`, []string{"--layer-pattern", "matches no tensor name"}},
		{"group captures a non-number", `^(\w+)\.blocks\.`, []string{"encoder", "not a non-negative integer"}},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLayout(names, tc.pattern)
			wantErr(t, err, tc.has...)
		})
	}
}
