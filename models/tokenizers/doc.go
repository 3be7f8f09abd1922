// Package tokenizers turns text into the token ids of LLaMA-family language
// models and back, behind one interface, [Tokenizer], and one entry point,
// [Load], which picks the implementation from what a folder holds:
//
//   - tokenizer.bin: llama2.c's export of a SentencePiece vocabulary
//     ([Llama2C]), encoded with run.c's algorithm, as the llama2.c models
//     (stories15M, stories260K) were trained with;
//   - tokenizer.model: a SentencePiece BPE model ([SentencePiece]), as
//     LLaMA-1/2, Mistral and Gemma ship, run by
//     github.com/eliben/go-sentencepiece;
//   - tokenizer.json: a Hugging Face byte-level BPE tokenizer ([HF]), as
//     GPT-2, LLaMA-3 and Qwen2 ship.
//
// Decoding follows SentencePiece and Hugging Face: [Tokenizer.Decode] gives
// the text of a whole sequence (control tokens give none, and the leading
// space that SentencePiece's dummy prefix adds is removed, so
// Decode(Encode(s)) == s for text the vocabulary covers), while
// [Tokenizer.DecodeToken] gives the bytes of one generated token for
// streaming, as llama2.c's decode does.
//
// How the implementations were checked: llama2.c's and go-sentencepiece's
// encodings of tok512 agree with Google's SentencePiece on a tokenizer.model
// rebuilt from tok512.bin, and the byte-level BPE agrees with Hugging Face's
// tokenizers on the test vocabularies (see the tests for what each
// expected id list rests on).
//
// The byte-to-rune table of byte-level BPE ([BytesToUnicode],
// [EncodeBytes], [DecodeBytes]) lives here, in a package without GoMLX, so
// every tokenizer can share it; models/clip's tokenizer has the same helpers.
//
// [TrainLlama2C] learns a byte-pair vocabulary from texts (SentencePiece's
// BPE training, simplified; words can be kept whole) for models trained from
// scratch, and [Llama2C.MarshalBinary] writes it as a tokenizer.bin.
//
// What each implementation does not support is listed on its type and
// reported by an error when a file needs it.
package tokenizers
