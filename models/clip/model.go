package clip

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Model is a CLIP model (or one of its towers) with its weights bound, ready
// to run on models.Backend(). Models made with WithWeights share compiled
// graphs.
type Model struct {
	Config  Config
	Weights models.Weights
	image   *models.Func // nil without an image tower
	text    *models.Func // nil without a text tower
	both    *models.Func // nil unless both towers
}

// Load opens a CLIP checkpoint in either naming (a folder or a .safetensors
// file; config.json or open_clip_config.json beside it when present, see
// ReadConfig) and reads its weights as float32.
func Load(path string) (*Model, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	c, err := ReadConfig(ck)
	if err != nil {
		return nil, err
	}
	return LoadWithConfig(ck, c)
}

// LoadWithConfig reads the weights of an open checkpoint for a given
// configuration (ReadConfig's, perhaps with heads or activation changed).
func LoadWithConfig(ck *checkpoint.Checkpoint, c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	w, err := models.ReadWeights(ck, c.Specs())
	if err != nil {
		return nil, err
	}
	return New(c, w)
}

// New binds weights to a configuration; w must hold every tensor of
// c.Specs() with its shape.
func New(c Config, w models.Weights) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := w.Check(c.Specs()); err != nil {
		return nil, err
	}
	m := &Model{Config: c, Weights: w}
	b := models.Backend()
	var err error
	if c.Vision != nil {
		m.image, err = models.NewFunc(b, "clip-image", c.ImageSpecs(), func(p models.Params, in []*graph.Node) []*graph.Node {
			return []*graph.Node{EncodeImage(c, p, in[0])}
		})
		if err != nil {
			return nil, err
		}
	}
	if c.Text != nil {
		m.text, err = models.NewFunc(b, "clip-text", c.TextSpecs(), func(p models.Params, in []*graph.Node) []*graph.Node {
			return []*graph.Node{EncodeText(c, p, in[0])}
		})
		if err != nil {
			return nil, err
		}
	}
	if c.Vision != nil && c.Text != nil {
		m.both, err = models.NewFunc(b, "clip", c.Specs(), func(p models.Params, in []*graph.Node) []*graph.Node {
			img, txt := EncodeImage(c, p, in[0]), EncodeText(c, p, in[1])
			return []*graph.Node{Logits(c, p, img, txt), img, txt}
		})
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// NewRandom creates a model with seeded random weights, initialised as
// transformers' CLIPPreTrainedModel._init_weights does (initializer_factor
// 1): token, position and patch embeddings N(0, 0.02²); the class embedding
// N(0, 1/width); q, k, v projections N(0, 1/(width·2L)) and the attention
// output N(0, 1/width); fc1 N(0, 1/(2·width)) and fc2 N(0, 1/(width·2L))
// (transformers swaps the names of the two scales, and so does this);
// projections N(0, 1/width) of their tower; zero biases, unit LayerNorm
// gains; logit_scale ln(1/0.07). The weights are drawn in the Hugging Face
// naming and converted, so one seed gives the same model in both namings.
func NewRandom(c Config, seed uint64) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	hc := c
	hc.Naming = HF
	stds := map[string]float64{}
	type tower struct {
		names towerNames
		tower *Tower
	}
	var towers []tower
	if hc.Vision != nil {
		towers = append(towers, tower{hfNames.vision, &hc.Vision.Tower})
	}
	if hc.Text != nil {
		towers = append(towers, tower{hfNames.text, &hc.Text.Tower})
	}
	for _, tw := range towers {
		width, layers := float64(tw.tower.Width), float64(tw.tower.Layers)
		in := 1 / math.Sqrt(width*2*layers)
		stds[tw.names.proj] = 1 / math.Sqrt(width)
		if tw.names.classEmb != "" {
			stds[tw.names.classEmb] = 1 / math.Sqrt(width)
		}
		for i := 0; i < tw.tower.Layers; i++ {
			b := tw.names.block(i)
			for _, n := range []string{b.q, b.k, b.v, b.fc2} {
				stds[n+".weight"] = in
			}
			stds[b.out+".weight"] = 1 / math.Sqrt(width)
			stds[b.fc1+".weight"] = 1 / math.Sqrt(2*width)
		}
	}
	w := models.RandomWeights(hc.Specs(), seed, func(s checkpoint.TensorSpec) models.Init {
		if std, ok := stds[s.Name]; ok {
			return models.Normal(std)
		}
		switch {
		case s.Name == hfNames.logitScale:
			return models.Init{Mean: math.Log(1 / 0.07)}
		case len(s.Shape) != 1:
			return models.Normal(0.02)
		case strings.HasSuffix(s.Name, "norm1.weight") || strings.HasSuffix(s.Name, "norm2.weight") ||
			strings.HasSuffix(s.Name, "layrnorm.weight") || strings.HasSuffix(s.Name, "layernorm.weight") ||
			strings.HasSuffix(s.Name, "final_layer_norm.weight"):
			return models.Ones
		}
		return models.Zeros
	})
	if c.Naming != HF {
		var err error
		if _, w, err = Convert(hc, w, c.Naming); err != nil {
			return nil, err
		}
	}
	return New(c, w)
}

// WithWeights returns the same model with other weights (a merge, a
// fine-tune) of the same naming and shapes, sharing the compiled graphs.
func (m *Model) WithWeights(w models.Weights) (*Model, error) {
	if err := w.Check(m.Config.Specs()); err != nil {
		return nil, err
	}
	out := *m
	out.Weights = w
	return &out, nil
}

// EncodeImage computes image embeddings [batch, EmbedDim] (unnormalized) of
// pixels, a float32 tensor [batch, image, image, channels]: channels-last,
// normalized as the checkpoint expects (for OpenAI's models, mean
// (0.48145466, 0.4578275, 0.40821073) and std (0.26862954, 0.26130258,
// 0.27577711) on [0, 1] RGB).
func (m *Model) EncodeImage(pixels *tensors.Tensor) (*tensors.Tensor, error) {
	if m.image == nil {
		return nil, fmt.Errorf("the CLIP model has no image tower")
	}
	outs, err := m.image.Call(m.Weights, pixels)
	if err != nil {
		return nil, fmt.Errorf("encoding images: %w", err)
	}
	return outs[0], nil
}

// EncodeText computes text embeddings [batch, EmbedDim] (unnormalized) of
// token ids, an int32 or int64 tensor [batch, seq ≤ ContextLength] (see
// TokenIDs).
func (m *Model) EncodeText(ids *tensors.Tensor) (*tensors.Tensor, error) {
	if m.text == nil {
		return nil, fmt.Errorf("the CLIP model has no text tower")
	}
	outs, err := m.text.Call(m.Weights, ids)
	if err != nil {
		return nil, fmt.Errorf("encoding texts: %w", err)
	}
	return outs[0], nil
}

// Logits runs both towers and returns logits_per_image [images, texts]
// (exp(logit_scale) times the cosine similarities) with the image and text
// embeddings.
func (m *Model) Logits(pixels, ids *tensors.Tensor) (logits, image, text *tensors.Tensor, err error) {
	if m.both == nil {
		return nil, nil, nil, fmt.Errorf("CLIP logits need both towers")
	}
	outs, err := m.both.Call(m.Weights, pixels, ids)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("running CLIP: %w", err)
	}
	return outs[0], outs[1], outs[2], nil
}

// Funcs returns the compiled functions (weights, inputs) → outputs of the
// image tower, the text tower and the whole model (logits, image and text
// embeddings); nil for what the model lacks.
func (m *Model) Funcs() (image, text, both *models.Func) { return m.image, m.text, m.both }

// TokenIDs packs rows of token ids (e.g. from Tokenizer.Tokenize) of one
// length into an int32 tensor [rows, length].
func TokenIDs(rows [][]int) (*tensors.Tensor, error) {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, fmt.Errorf("no token ids")
	}
	n := len(rows[0])
	flat := make([]int32, 0, len(rows)*n)
	for i, r := range rows {
		if len(r) != n {
			return nil, fmt.Errorf("row %d has %d token ids, row 0 has %d: pad the rows to one length", i, len(r), n)
		}
		for _, id := range r {
			if id < 0 || id > math.MaxInt32 {
				return nil, fmt.Errorf("row %d: token id %d out of range", i, id)
			}
			flat = append(flat, int32(id))
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, len(rows), n), nil
}

// Convert returns the model in another naming, sharing the tensors that do
// not change.
func (m *Model) Convert(to Naming) (*Model, error) {
	c, w, err := Convert(m.Config, m.Weights, to)
	if err != nil {
		return nil, err
	}
	return New(c, w)
}

// Convert renames weights from c's naming to another: Hugging Face's
// separate q, k, v projections become torch's fused in_proj (rows q, k, v)
// and back, and the projections are transposed (HF Linear [embed, width],
// OpenAI [width, embed]). Tensors that do not change are shared, not copied.
func Convert(c Config, w models.Weights, to Naming) (Config, models.Weights, error) {
	if err := w.Check(c.Specs()); err != nil {
		return c, nil, err
	}
	out := c
	out.Naming = to
	if err := out.Validate(); err != nil {
		return c, nil, err
	}
	if to == c.Naming {
		cp := make(models.Weights, len(w))
		for k, v := range w {
			cp[k] = v
		}
		return out, cp, nil
	}
	src, dst := namesOf(c.Naming), namesOf(to)
	res := make(models.Weights, len(w))
	same := func(a, b string) { res[b] = w[a] }
	pair := func(a, b string) { same(a+".weight", b+".weight"); same(a+".bias", b+".bias") }
	tower := func(s, d towerNames, t Tower) {
		same(s.pos, d.pos)
		pair(s.post, d.post)
		for i := range t.Layers {
			sb, db := s.block(i), d.block(i)
			pair(sb.ln1, db.ln1)
			pair(sb.ln2, db.ln2)
			pair(sb.out, db.out)
			pair(sb.fc1, db.fc1)
			pair(sb.fc2, db.fc2)
			if sb.inW == "" { // HF → OpenAI
				res[db.inW] = concatRows(w[sb.q+".weight"], w[sb.k+".weight"], w[sb.v+".weight"])
				res[db.inB] = concatRows(w[sb.q+".bias"], w[sb.k+".bias"], w[sb.v+".bias"])
			} else { // OpenAI → HF
				ws, bs := splitRows(w[sb.inW], 3), splitRows(w[sb.inB], 3)
				res[db.q+".weight"], res[db.k+".weight"], res[db.v+".weight"] = ws[0], ws[1], ws[2]
				res[db.q+".bias"], res[db.k+".bias"], res[db.v+".bias"] = bs[0], bs[1], bs[2]
			}
		}
		if c.EmbedDim > 0 {
			res[d.proj] = transpose2D(w[s.proj])
		}
	}
	if v := c.Vision; v != nil {
		same(src.vision.classEmb, dst.vision.classEmb)
		same(src.vision.patch, dst.vision.patch)
		pair(src.vision.pre, dst.vision.pre)
		tower(src.vision, dst.vision, v.Tower)
	}
	if t := c.Text; t != nil {
		same(src.text.tok, dst.text.tok)
		tower(src.text, dst.text, t.Tower)
	}
	if c.Vision != nil && c.Text != nil {
		same(src.logitScale, dst.logitScale)
	}
	return out, res, res.Check(out.Specs())
}

func concatRows(ts ...*tensors.Tensor) *tensors.Tensor {
	d := ts[0].Shape().Dimensions
	var flat []float32
	for _, t := range ts {
		flat = append(flat, tensors.MustCopyFlatData[float32](t)...)
	}
	dims := append([]int{len(ts) * d[0]}, d[1:]...)
	return tensors.FromFlatDataAndDimensions(flat, dims...)
}

func splitRows(t *tensors.Tensor, n int) []*tensors.Tensor {
	d := t.Shape().Dimensions
	flat := tensors.MustCopyFlatData[float32](t)
	dims := append([]int{d[0] / n}, d[1:]...)
	size := len(flat) / n
	out := make([]*tensors.Tensor, n)
	for i := range out {
		out[i] = tensors.FromFlatDataAndDimensions(flat[i*size:(i+1)*size], dims...)
	}
	return out
}

func transpose2D(t *tensors.Tensor) *tensors.Tensor {
	d := t.Shape().Dimensions
	src := tensors.MustCopyFlatData[float32](t)
	out := tensors.FromShape(shapes.Make(dtypes.Float32, d[1], d[0]))
	tensors.MustMutableFlatData(out, func(flat []float32) {
		for i := range d[0] {
			for j := range d[1] {
				flat[j*d[0]+i] = src[i*d[1]+j]
			}
		}
	})
	return out
}

// Save writes the model in its naming: for Hugging Face, a folder with
// model.safetensors (or shards) and config.json; for OpenAI, the weights
// (a folder, or a .safetensors file) and, in a folder, an
// open_clip_config.json recording what shapes cannot (heads, activation).
// A .safetensors file in OpenAI naming is only written when shapes alone
// give the architecture back (heads = width/64, QuickGELU).
func (m *Model) Save(out string, opts checkpoint.WriteOptions) error {
	side, err := m.Config.sideFiles(strings.HasSuffix(out, ".safetensors"))
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return m.Weights.Save(out, m.Config.Specs(), side, opts)
}

func (c Config) sideFiles(singleFile bool) (map[string][]byte, error) {
	if c.Naming == HF {
		if singleFile {
			return nil, fmt.Errorf("a Hugging Face CLIP checkpoint needs config.json beside it: write to a folder")
		}
		return map[string][]byte{"config.json": c.HFConfigJSON()}, nil
	}
	data, err := c.OpenCLIPConfigJSON()
	if err != nil {
		return nil, err
	}
	if singleFile {
		if !c.shapesSuffice() {
			return nil, fmt.Errorf("the architecture (heads, activation) is not what shapes alone give back: write to a folder, which gets an open_clip_config.json")
		}
		return nil, nil
	}
	return map[string][]byte{"open_clip_config.json": data}, nil
}

// shapesSuffice reports whether ReadConfig without a config file gives c
// back.
func (c Config) shapesSuffice() bool {
	ok := func(t Tower) bool { return t.Heads == max(1, t.Width/64) && t.Act == "quick_gelu" && t.Eps == 1e-5 }
	return (c.Vision == nil || ok(c.Vision.Tower)) && (c.Text == nil || ok(c.Text.Tower))
}

func hfTowerJSON(t Tower, modelType string) hfTowerConfig {
	h := hfTowerOf(t)
	h.ModelType = modelType
	return h
}

// HFConfigJSON renders the config as a Hugging Face config.json: CLIPModel
// with both towers, else CLIPVisionModel(WithProjection) or
// CLIPTextModel(WithProjection).
func (c Config) HFConfigJSON() []byte {
	var vision, text *hfTowerConfig
	if v := c.Vision; v != nil {
		h := hfTowerJSON(v.Tower, "clip_vision_model")
		h.ImageSize, h.PatchSize, h.NumChannels = v.ImageSize, v.PatchSize, v.Channels
		vision = &h
	}
	if t := c.Text; t != nil {
		h := hfTowerJSON(t.Tower, "clip_text_model")
		h.VocabSize, h.MaxPositionEmbeddings = t.VocabSize, t.ContextLength
		// The end-of-text token is the highest id (49407 in CLIP's
		// vocabulary): transformers then pools where the reference does.
		eos, bos, pad := t.VocabSize-1, max(t.VocabSize-2, 0), 0
		h.EOSTokenID, h.BOSTokenID, h.PadTokenID = &eos, &bos, &pad
		text = &h
	}
	var v any
	switch {
	case vision != nil && text != nil:
		v = map[string]any{
			"architectures": []string{"CLIPModel"}, "model_type": "clip", "projection_dim": c.EmbedDim,
			"logit_scale_init_value": math.Log(1 / 0.07), "vision_config": vision, "text_config": text,
			"torch_dtype": "float32",
		}
	case vision != nil:
		vision.Architectures = []string{"CLIPVisionModel"}
		if c.EmbedDim > 0 {
			vision.Architectures, vision.ProjectionDim = []string{"CLIPVisionModelWithProjection"}, c.EmbedDim
		}
		v = vision
	default:
		text.Architectures = []string{"CLIPTextModel"}
		if c.EmbedDim > 0 {
			text.Architectures, text.ProjectionDim = []string{"CLIPTextModelWithProjection"}, c.EmbedDim
		}
		v = text
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // plain structs and maps always marshal
	}
	return append(data, '\n')
}

// OpenCLIPConfigJSON renders the config as open_clip's
// open_clip_config.json ({"model_cfg": ...}).
func (c Config) OpenCLIPConfigJSON() ([]byte, error) {
	act := ""
	for _, t := range []*Tower{towerOf(c.Vision), towerOfText(c.Text)} {
		if t == nil {
			continue
		}
		if t.Act != "quick_gelu" && t.Act != "gelu" {
			return nil, fmt.Errorf("open_clip configs know only gelu and quick_gelu, not %q", t.Act)
		}
		if act != "" && t.Act != act {
			return nil, fmt.Errorf("open_clip configs have one activation for both towers, not %s and %s", act, t.Act)
		}
		if t.Eps != 1e-5 {
			return nil, fmt.Errorf("OpenAI-named CLIP models have LayerNorm epsilon 1e-5, not %g", t.Eps)
		}
		act = t.Act
	}
	mc := map[string]any{"embed_dim": c.EmbedDim, "quick_gelu": act == "quick_gelu"}
	if v := c.Vision; v != nil {
		mc["vision_cfg"] = map[string]any{"image_size": v.ImageSize, "layers": v.Layers, "width": v.Width,
			"head_width": v.Width / v.Heads, "patch_size": v.PatchSize, "mlp_ratio": float64(v.MLP) / float64(v.Width)}
	}
	if t := c.Text; t != nil {
		mc["text_cfg"] = map[string]any{"context_length": t.ContextLength, "vocab_size": t.VocabSize, "width": t.Width,
			"heads": t.Heads, "layers": t.Layers, "mlp_ratio": float64(t.MLP) / float64(t.Width)}
	}
	data, err := json.MarshalIndent(map[string]any{"model_cfg": mc}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func towerOf(v *VisionConfig) *Tower {
	if v == nil {
		return nil
	}
	return &v.Tower
}

func towerOfText(t *TextConfig) *Tower {
	if t == nil {
		return nil
	}
	return &t.Tower
}
