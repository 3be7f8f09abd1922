package clip

import (
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// The naming table: every tensor name of both namings comes from here, for
// shape inference, loading, initialisation, conversion and saving alike.

// blockNames are the names in one residual block: prefixes to which
// ".weight"/".bias" are appended, except the fused in_proj's full names.
type blockNames struct {
	ln1, ln2      string
	q, k, v       string // Hugging Face: separate projections
	inW, inB      string // OpenAI: torch.nn.MultiheadAttention's fused in_proj
	out, fc1, fc2 string
}

// towerNames are the names of one tower.
type towerNames struct {
	hf        bool
	blocks    string // prefix of block i: blocks + "i."
	pre, post string // LayerNorm prefixes ("" for none)
	proj      string // projection: HF Linear weight [embed, width]; OpenAI matrix [width, embed]
	classEmb  string // image tower only
	patch     string // image tower: patch-embedding convolution weight
	tok       string // text tower: token embedding
	pos       string // position embedding
}

type names struct {
	vision, text towerNames
	logitScale   string
}

func (t towerNames) block(i int) blockNames {
	p := fmt.Sprintf("%s%d.", t.blocks, i)
	if t.hf {
		return blockNames{ln1: p + "layer_norm1", ln2: p + "layer_norm2",
			q: p + "self_attn.q_proj", k: p + "self_attn.k_proj", v: p + "self_attn.v_proj",
			out: p + "self_attn.out_proj", fc1: p + "mlp.fc1", fc2: p + "mlp.fc2"}
	}
	return blockNames{ln1: p + "ln_1", ln2: p + "ln_2", inW: p + "attn.in_proj_weight", inB: p + "attn.in_proj_bias",
		out: p + "attn.out_proj", fc1: p + "mlp.c_fc", fc2: p + "mlp.c_proj"}
}

var hfNames = names{
	vision: towerNames{hf: true, blocks: "vision_model.encoder.layers.",
		pre: "vision_model.pre_layrnorm", post: "vision_model.post_layernorm", proj: "visual_projection.weight",
		classEmb: "vision_model.embeddings.class_embedding", patch: "vision_model.embeddings.patch_embedding.weight",
		pos: "vision_model.embeddings.position_embedding.weight"},
	text: towerNames{hf: true, blocks: "text_model.encoder.layers.",
		post: "text_model.final_layer_norm", proj: "text_projection.weight",
		tok: "text_model.embeddings.token_embedding.weight", pos: "text_model.embeddings.position_embedding.weight"},
	logitScale: "logit_scale",
}

var openAINames = names{
	vision: towerNames{blocks: "visual.transformer.resblocks.",
		pre: "visual.ln_pre", post: "visual.ln_post", proj: "visual.proj",
		classEmb: "visual.class_embedding", patch: "visual.conv1.weight", pos: "visual.positional_embedding"},
	text: towerNames{blocks: "transformer.resblocks.",
		post: "ln_final", proj: "text_projection", tok: "token_embedding.weight", pos: "positional_embedding"},
	logitScale: "logit_scale",
}

func namesOf(n Naming) names {
	if n == OpenAI {
		return openAINames
	}
	return hfNames
}

// Which tower a tensor belongs to.
const (
	towerImage = 'v'
	towerText  = 't'
	towerBoth  = 's' // logit_scale
)

type taggedSpec struct {
	checkpoint.TensorSpec
	tower byte
}

// allSpecs lists the model's tensors in the order its naming's reference
// implementation saves them.
func (c Config) allSpecs() []taggedSpec {
	nm := namesOf(c.Naming)
	var out []taggedSpec
	var tower byte
	add := func(name string, shape ...int) { out = append(out, taggedSpec{models.Spec(name, shape...), tower}) }
	norm := func(prefix string, w int) { add(prefix+".weight", w); add(prefix+".bias", w) }
	linear := func(prefix string, o, i int) { add(prefix+".weight", o, i); add(prefix+".bias", o) }
	blocks := func(tn towerNames, t Tower) {
		for i := range t.Layers {
			b := tn.block(i)
			if tn.hf {
				linear(b.k, t.Width, t.Width)
				linear(b.v, t.Width, t.Width)
				linear(b.q, t.Width, t.Width)
				linear(b.out, t.Width, t.Width)
				norm(b.ln1, t.Width)
				linear(b.fc1, t.MLP, t.Width)
				linear(b.fc2, t.Width, t.MLP)
				norm(b.ln2, t.Width)
			} else {
				add(b.inW, 3*t.Width, t.Width)
				add(b.inB, 3*t.Width)
				linear(b.out, t.Width, t.Width)
				norm(b.ln1, t.Width)
				linear(b.fc1, t.MLP, t.Width)
				linear(b.fc2, t.Width, t.MLP)
				norm(b.ln2, t.Width)
			}
		}
	}
	v, t, e := c.Vision, c.Text, c.EmbedDim
	visionEmbeddings := func() {
		tower = towerImage
		add(nm.vision.classEmb, v.Width)
		if c.Naming == OpenAI {
			add(nm.vision.pos, v.NumPatches()+1, v.Width)
			add(nm.vision.proj, v.Width, e)
			add(nm.vision.patch, v.Width, v.Channels, v.PatchSize, v.PatchSize)
		} else {
			add(nm.vision.patch, v.Width, v.Channels, v.PatchSize, v.PatchSize)
			add(nm.vision.pos, v.NumPatches()+1, v.Width)
		}
		norm(nm.vision.pre, v.Width)
		blocks(nm.vision, v.Tower)
		norm(nm.vision.post, v.Width)
	}
	if c.Naming == OpenAI {
		if t != nil {
			tower = towerText
			add(nm.text.pos, t.ContextLength, t.Width)
			add(nm.text.proj, t.Width, e)
		}
		if v != nil && t != nil {
			tower = towerBoth
			add(nm.logitScale)
		}
		if v != nil {
			visionEmbeddings()
		}
		if t != nil {
			tower = towerText
			blocks(nm.text, t.Tower)
			add(nm.text.tok, t.VocabSize, t.Width)
			norm(nm.text.post, t.Width)
		}
		return out
	}
	if t != nil {
		tower = towerText
		add(nm.text.tok, t.VocabSize, t.Width)
		add(nm.text.pos, t.ContextLength, t.Width)
		blocks(nm.text, t.Tower)
		norm(nm.text.post, t.Width)
	}
	if v != nil {
		visionEmbeddings()
	}
	if e > 0 {
		if v != nil {
			tower = towerImage
			add(nm.vision.proj, e, v.Width)
		}
		if t != nil {
			tower = towerText
			add(nm.text.proj, e, t.Width)
		}
	}
	if v != nil && t != nil {
		tower = towerBoth
		add(nm.logitScale)
	}
	return out
}

func (c Config) specsOf(keep func(tower byte) bool) []checkpoint.TensorSpec {
	var out []checkpoint.TensorSpec
	for _, s := range c.allSpecs() {
		if keep(s.tower) {
			out = append(out, s.TensorSpec)
		}
	}
	return out
}

// Specs lists all the model's tensors with their shapes, in the order the
// naming's reference implementation saves them.
func (c Config) Specs() []checkpoint.TensorSpec {
	return c.specsOf(func(byte) bool { return true })
}

// ImageSpecs lists the tensors of the image tower and its projection.
func (c Config) ImageSpecs() []checkpoint.TensorSpec {
	return c.specsOf(func(t byte) bool { return t == towerImage })
}

// TextSpecs lists the tensors of the text tower and its projection.
func (c Config) TextSpecs() []checkpoint.TensorSpec {
	return c.specsOf(func(t byte) bool { return t == towerText })
}
