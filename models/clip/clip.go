package clip

import (
	"fmt"

	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// The forward passes, as pure graph functions of the weights (Params keyed
// by the checkpoint names of c.Naming).

func blockWeights(p models.Params, b blockNames) models.BlockW {
	attn := models.AttentionW{Out: p.Linear(b.out)}
	if b.inW != "" {
		attn.InProj = models.LinearW{Weight: p.Get(b.inW), Bias: p.Opt(b.inB)}
	} else {
		attn.Q, attn.K, attn.V = p.Linear(b.q), p.Linear(b.k), p.Linear(b.v)
	}
	return models.BlockW{
		LN1:  p.Norm(b.ln1),
		Attn: attn,
		LN2:  p.Norm(b.ln2),
		MLP:  models.MLPW{FC1: p.Linear(b.fc1), FC2: p.Linear(b.fc2)},
	}
}

func runBlocks(x *graph.Node, p models.Params, tn towerNames, t Tower, causal bool) *graph.Node {
	act, err := models.ParseActivation(t.Act)
	if err != nil {
		panic(err)
	}
	bc := models.BlockConfig{Heads: t.Heads, Eps: t.Eps, Act: act, Causal: causal}
	for i := range t.Layers {
		x = models.Block(x, blockWeights(p, tn.block(i)), bc)
	}
	return x
}

func project(c Config, p models.Params, tn towerNames, x *graph.Node) *graph.Node {
	if c.EmbedDim == 0 {
		return x
	}
	if tn.hf {
		return models.Linear(x, models.LinearW{Weight: p.Get(tn.proj)})
	}
	return models.Project(x, p.Get(tn.proj)) // x @ proj, proj [width, embed]
}

// EncodeImage is the image tower: pixels [batch, image, image, channels]
// (channels-last, normalized as the checkpoint expects) to image embeddings
// [batch, EmbedDim], unnormalized (CLIPModel.get_image_features, OpenAI's
// encode_image); without a projection, the pooled output [batch, width].
func EncodeImage(c Config, p models.Params, pixels *graph.Node) *graph.Node {
	v := c.Vision
	if v == nil {
		panic(fmt.Errorf("clip: the model has no image tower"))
	}
	d := pixels.Shape().Dimensions
	if len(d) != 4 || d[1] != v.ImageSize || d[2] != v.ImageSize || d[3] != v.Channels {
		panic(fmt.Errorf("clip: pixels must be [batch, %d, %d, %d] (channels-last), got %s", v.ImageSize, v.ImageSize, v.Channels, pixels.Shape()))
	}
	tn := namesOf(c.Naming).vision
	x := models.PatchEmbed(pixels, p.Get(tn.patch), nil) // CLIP's patch convolution has no bias
	x = models.PrependToken(x, p.Get(tn.classEmb))
	x = graph.Add(x, graph.Reshape(p.Get(tn.pos), 1, v.NumPatches()+1, v.Width))
	x = models.LayerNorm(x, p.Norm(tn.pre), v.Eps)
	x = runBlocks(x, p, tn, v.Tower, false)
	pooled := models.LayerNorm(models.Token(x, 0), p.Norm(tn.post), v.Eps)
	return project(c, p, tn, pooled)
}

// EncodeText is the text tower: token ids [batch, seq] (any integer type,
// seq ≤ ContextLength; CLIP's tokenizer pads to 77 with zeros) to text
// embeddings [batch, EmbedDim], unnormalized (get_text_features, OpenAI's
// encode_text); without a projection, the pooled output [batch, width].
// Attention is causal, and the pooled token is the one at the position of
// the highest id in each row (the end-of-text token in CLIP's vocabulary),
// as the reference implementations take it (argmax of the ids).
func EncodeText(c Config, p models.Params, ids *graph.Node) *graph.Node {
	t := c.Text
	if t == nil {
		panic(fmt.Errorf("clip: the model has no text tower"))
	}
	d := ids.Shape().Dimensions
	if len(d) != 2 || d[1] > t.ContextLength || d[1] == 0 || !ids.DType().IsInt() {
		panic(fmt.Errorf("clip: token ids must be integers [batch, seq ≤ %d], got %s", t.ContextLength, ids.Shape()))
	}
	tn := namesOf(c.Naming).text
	x := models.Embed(p.Get(tn.tok), ids)
	pos := models.FirstRows(p.Get(tn.pos), d[1])
	x = graph.Add(x, graph.Reshape(pos, 1, d[1], t.Width))
	x = runBlocks(x, p, tn, t.Tower, true)
	// The final LayerNorm acts on each token alone: pool first, then norm.
	pooled := models.TokenAt(x, graph.ArgMax(ids, -1))
	pooled = models.LayerNorm(pooled, p.Norm(tn.post), t.Eps)
	return project(c, p, tn, pooled)
}

// Logits is CLIP's similarity: exp(logit_scale)·(image/|image|)·(text/|text|)ᵀ,
// [images, texts] (logits_per_image; its transpose is logits_per_text).
func Logits(c Config, p models.Params, image, text *graph.Node) *graph.Node {
	scale := graph.Exp(graph.Reshape(p.Get(namesOf(c.Naming).logitScale)))
	sim := graph.DotGeneral(models.NormalizeL2(image), []int{1}, nil, models.NormalizeL2(text), []int{1}, nil)
	return graph.Mul(sim, scale)
}
