// Package encoder loads image encoders: an Encoder is a checkpoint's image
// tower as weights, a pure forward graph function of them (Forward), the
// model's image preprocessing and the kind of feature it computes
// (heads.FeaturesViT or heads.FeaturesCLIP, as heads record it).
//
// Load reads one from any supported checkpoint (folder or .safetensors
// file):
//
//   - a Hugging Face ViTModel / ViTForImageClassification: the feature is
//     the pooled CLS token after the final layernorm; the checkpoint's own
//     classifier (and the unused pooler) are not part of the encoder;
//   - the image tower of a CLIP model in Hugging Face or OpenAI/open_clip
//     naming: the feature is the projected image embedding (get_image_features,
//     encode_image); the text tower and logit_scale are not read.
//
// The preprocessing is the family's (datasets.ViT or datasets.CLIP at the
// model's image size), with image_mean and image_std from a Hugging Face
// preprocessor_config.json beside the weights when there is one.
//
// Fine-tuning (models/train) trains Forward's weights; evaluation, merge
// search, embedding and linear probes (cmd/editkit) run it through Encode,
// Classifier or Func, whose compiled graph is shared by every set of
// weights of the encoder's architecture (a merge, a fine-tune).
package encoder
