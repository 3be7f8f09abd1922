// Package clip holds editkit's support for OpenAI's CLIP models.
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
// The byte-level helpers ([BytesToUnicode], [EncodeBytes], [DecodeBytes])
// are GPT-2's bytes_to_unicode scheme and carry nothing CLIP-specific.
package clip
