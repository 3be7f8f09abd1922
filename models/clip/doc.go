// Package clip holds editkit's support for CLIP models: the image and text
// encoders in GoMLX, loading real checkpoints, and the tokenizer.
//
// # Models
//
// Both namings of CLIP checkpoints load through one code path ([Load]):
//
//   - Hugging Face ([HF]): CLIPModel, CLIPVisionModel(WithProjection) and
//     CLIPTextModel(WithProjection): vision_model.*, text_model.*,
//     visual_projection, text_projection, logit_scale, with config.json;
//   - OpenAI ([OpenAI]): the state dicts of OpenAI's clip/model.py, whose
//     names open_clip keeps: visual.*, transformer.resblocks.*,
//     token_embedding, positional_embedding, ln_final, text_projection,
//     logit_scale. Such files carry no config: widths, layers, patch and
//     image size, context length and vocabulary come from the shapes, heads
//     are width/64 as OpenAI's build_model infers them, and the activation is
//     QuickGELU, unless an open_clip_config.json beside the weights says
//     otherwise (open_clip's layout: model_cfg.vision_cfg.head_width,
//     text_cfg.heads, quick_gelu).
//
// [ReadConfig] tells the naming and architecture; [EncodeImage],
// [EncodeText] and [Logits] are the forward passes as pure graph functions
// of the weights; [Model] binds weights and runs them:
//
//	m, err := clip.Load("ViT-B-32/open_clip_model.safetensors")
//	img, err := m.EncodeImage(pixels) // float32 [B, 224, 224, 3], channels-last, normalized
//	ids, err := clip.TokenIDs(rows)    // from Tokenizer.Tokenize
//	txt, err := m.EncodeText(ids)
//	logits, img, txt, err := m.Logits(pixels, ids) // logits_per_image [B_img, B_txt]
//
// Embeddings are unnormalized (get_image_features, encode_image); logits are
// exp(logit_scale) times cosine similarities. The text tower pools at the
// highest token id of each row, the end-of-text token, as the reference
// implementations do (argmax of the ids). [Convert] moves weights between
// the namings (fusing or splitting q/k/v, transposing the projections);
// [NewRandom] and [Model.Save] create and write models in either naming, so
// that what editkit writes loads through the same path.
//
// Not supported: ResNet image towers, and open_clip variants with layer
// scale, attentional pooling, other pooling types or Hugging Face text
// towers (Load says so).
//
// # Tokenizer
//
// Its tokenizer ([Tokenizer], loaded with [LoadTokenizer],
// [LoadOpenAITokenizer] or [LoadHFTokenizer]) turns text into the 77 token
// ids CLIP's text encoder takes, exactly as OpenAI's clip.tokenize and
// simple_tokenizer.py do (Hugging Face's CLIPTokenizer shares the vocabulary
// and BPE): HTML unescaping, whitespace collapsing and Python lowercasing
// ([CleanText]; ftfy.fix_text is not ported), the reference's
// pre-tokenization pattern ([Words]), byte-level BPE with a "</w>"
// end-of-word marker, start token 49406, end token 49407, truncation that
// keeps the end token, and zero padding. [Tokenizer.Tokenize] also returns the
// end token's position, where CLIP pools the text features.
//
// Its byte-level table is GPT-2's bytes_to_unicode scheme, shared with the
// LLM tokenizers in models/tokenizers.
package clip
