package tokenizers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Tokenizer turns text into token ids and back.
//
// Implementations are safe for concurrent use once loaded.
type Tokenizer interface {
	// Encode returns the ids of text, with the BOS id first when bos is set
	// and the EOS id last when eos is set (each only where the tokenizer
	// has one, see BOS and EOS).
	Encode(text string, bos, eos bool) []int
	// Decode returns the text of ids. Control tokens (BOS, EOS, padding,
	// special added tokens) give no text, byte tokens are joined into
	// UTF-8, and the leading space a SentencePiece-style tokenizer adds
	// when encoding (the dummy prefix) is removed, so Decode(Encode(s))
	// gives s back for text the vocabulary covers.
	Decode(ids []int) string
	// DecodeToken returns the text of one generated token that follows prev,
	// as llama2.c's decode does for streaming output: the leading space of a
	// piece that follows BOS is dropped and a byte token (<0xXX>) gives its
	// single byte, which may be part of a multi-byte UTF-8 character. An id
	// out of range gives "".
	DecodeToken(prev, id int) string
	// VocabSize is the number of ids.
	VocabSize() int
	// BOS and EOS are the ids of the begin- and end-of-sequence tokens, or
	// -1 where the tokenizer has none.
	BOS() int
	EOS() int
}

// File names [Load] looks for in a folder, in the order it tries them.
const (
	SentencePieceFile = "tokenizer.model" // SentencePiece model proto
	HFTokenizerFile   = "tokenizer.json"  // Hugging Face tokenizers
	Llama2CFile       = "tokenizer.bin"   // llama2.c's export
)

// Load loads the tokenizer that path holds. path is a folder or a file:
//
//   - tokenizer.model: a SentencePiece BPE model ([LoadSentencePiece]);
//   - tokenizer.json: a Hugging Face byte-level BPE tokenizer ([LoadHF]),
//     reading tokenizer_config.json beside it for the BOS and EOS tokens;
//   - tokenizer.bin, or any other file ending in .bin: a llama2.c tokenizer
//     ([LoadLlama2C]).
//
// A folder is searched for those names in that order, and the first one
// that loads is used: LLaMA-2 style folders ship both tokenizer.model and a
// tokenizer.json this package cannot read (SentencePiece byte fallback),
// and LLaMA-3 folders may hold a tiktoken file named tokenizer.model. When
// none loads, the error gives each file's reason.
func Load(path string) (Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tokenizer %s does not exist: give a folder holding %s, %s or %s, or one of those files", path, SentencePieceFile, HFTokenizerFile, Llama2CFile)
		}
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if !st.IsDir() {
		return loadFile(path)
	}
	var errs []string
	for _, name := range []string{SentencePieceFile, HFTokenizerFile, Llama2CFile} {
		p := filepath.Join(path, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		t, err := loadFile(p)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("tokenizer folder %s holds none of %s, %s, %s", path, SentencePieceFile, HFTokenizerFile, Llama2CFile)
	}
	return nil, fmt.Errorf("no tokenizer in %s could be loaded: %s", path, strings.Join(errs, "; "))
}

func loadFile(path string) (Tokenizer, error) {
	base := filepath.Base(path)
	switch {
	case base == SentencePieceFile || strings.HasSuffix(base, ".model"):
		return LoadSentencePiece(path)
	case strings.HasSuffix(base, ".json"):
		return LoadHF(path)
	case strings.HasSuffix(base, ".bin"):
		return LoadLlama2C(path)
	}
	return nil, fmt.Errorf("tokenizer %s: unknown file type: expected %s (or *.model), %s (or *.json) or %s (or *.bin)", path, SentencePieceFile, HFTokenizerFile, Llama2CFile)
}

// decodeAll joins DecodeToken over ids the way SentencePiece decodes: the
// sequence starts as if after BOS (so the dummy-prefix space of the first
// piece goes) and the ids in skip give no text (but, as BOS does in
// llama2.c, strip the leading space of the piece after them when they are
// the BOS id).
func decodeAll(t Tokenizer, ids []int, skip func(int) bool) string {
	var sb strings.Builder
	prev := t.BOS()
	if prev < 0 {
		prev = -2 // no BOS: nothing to strip
	}
	for _, id := range ids {
		if skip(id) {
			prev = id
			continue
		}
		sb.WriteString(t.DecodeToken(prev, id))
		prev = id
	}
	return sb.String()
}
