package clip

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/tokenizers"
)

const (
	// StartOfText and EndOfText are CLIP's special tokens; with OpenAI's
	// vocabulary their ids are [StartOfTextID] and [EndOfTextID].
	StartOfText = "<|startoftext|>"
	EndOfText   = "<|endoftext|>"

	// StartOfTextID and EndOfTextID are the special tokens' ids in the
	// vocabulary of every released CLIP (OpenAI, HF, open_clip).
	StartOfTextID = 49406
	EndOfTextID   = 49407

	// ContextLength is the text length every CLIP model takes.
	ContextLength = 77

	// MaxMerges is the number of merges the reference reads (its
	// merges[1:49152-256-2+1]): a 49408-token vocabulary of 256 bytes, 256
	// bytes+"</w>", the merges and the two special tokens.
	MaxMerges = 49152 - 256 - 2

	// OpenAIVocabFile is the name of OpenAI's merges file; HFVocabFile and
	// HFMergesFile the names of Hugging Face's pair.
	OpenAIVocabFile = "bpe_simple_vocab_16e6.txt.gz"
	HFVocabFile     = "vocab.json"
	HFMergesFile    = "merges.txt"

	endOfWord = "</w>"

	// maxCacheEntries bounds the per-word BPE cache; when it is full the
	// cache starts over (the reference's grows without bound).
	maxCacheEntries = 1 << 16

	// maxVocabID bounds the ids a vocab.json may use (the id table is
	// allocated up to the largest).
	maxVocabID = 1 << 22
)

// ErrTooLong is returned (wrapped) by [Tokenizer.TokenizeLength] without
// truncation for a text whose tokens do not fit the context length.
var ErrTooLong = errors.New("text is too long for the context length")

// Tokenizer is CLIP's byte-level BPE tokenizer: OpenAI's
// simple_tokenizer.SimpleTokenizer and clip.tokenize. It is safe for
// concurrent use.
//
// Encoding cleans the text ([CleanText]: HTML unescaping, whitespace
// collapsing, Python lowercasing; ftfy.fix_text is skipped, see there),
// splits it with the reference's pattern ([Words]), maps each piece's UTF-8
// bytes to runes with [BytesToUnicode], appends "</w>" to the last symbol and
// applies the merges by rank. Results are cached per piece.
//
// Hugging Face's CLIPTokenizer has the same vocabulary, merges, pattern and
// BPE, so it gives the same ids for ordinary text; its text cleaning differs
// in corner cases (no HTML unescaping; CLIPTokenizerFast normalises to NFC),
// and it pads with the end token where clip.tokenize pads with zeros. This
// tokenizer follows OpenAI's in both.
type Tokenizer struct {
	vocab  map[string]int // token -> id (the reference's encoder)
	tokens []string       // id -> token ("" where no token has the id)

	merges  map[uint64]merge // (left id, right id) -> rank and result
	initial [256]int         // id of byte b's symbol
	final   [256]int         // id of byte b's symbol + "</w>"
	sot     int
	eot     int

	mu    sync.RWMutex
	cache map[string][]int
}

type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// LoadTokenizer loads a tokenizer from path: OpenAI's merges file
// (bpe_simple_vocab_16e6.txt.gz, or the same text uncompressed), or a folder
// holding Hugging Face's vocab.json and merges.txt or else OpenAI's file.
func LoadTokenizer(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	if !st.IsDir() {
		return LoadOpenAITokenizer(path)
	}
	vocab, merges := filepath.Join(path, HFVocabFile), filepath.Join(path, HFMergesFile)
	if fileExists(vocab) || fileExists(merges) {
		return LoadHFTokenizer(vocab, merges)
	}
	if p := filepath.Join(path, OpenAIVocabFile); fileExists(p) {
		return LoadOpenAITokenizer(p)
	}
	return nil, fmt.Errorf("clip tokenizer: %s holds neither %s and %s nor %s", path, HFVocabFile, HFMergesFile, OpenAIVocabFile)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// LoadOpenAITokenizer loads OpenAI's merges file (gzip-compressed as
// released, or plain text): a version header line, then one merge ("a b")
// per line. As the reference, it uses the first [MaxMerges] merges and builds
// the vocabulary from them: the 256 byte symbols in bytes_to_unicode order,
// the same with "</w>", each merge's concatenation, then StartOfText and
// EndOfText. A file with fewer merges gives a smaller vocabulary whose
// special tokens follow its merges. A merge whose symbols are not tokens
// (bytes or earlier merges), which no well-formed file has, is an error.
func LoadOpenAITokenizer(path string) (*Tokenizer, error) {
	data, err := readMaybeGzip(path)
	if err != nil {
		return nil, err
	}
	return parseOpenAI(data, path)
}

// NewOpenAITokenizer is [LoadOpenAITokenizer] reading from r; name is the
// file name used in errors.
func NewOpenAITokenizer(r io.Reader, name string) (*Tokenizer, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: reading %s: %w", name, err)
	}
	if isGzip(data) {
		if data, err = gunzip(data, name); err != nil {
			return nil, err
		}
	}
	return parseOpenAI(data, name)
}

func isGzip(data []byte) bool { return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b }

func gunzip(data []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %s: %w", name, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %s: corrupt gzip data: %w", name, err)
	}
	return out, nil
}

func readMaybeGzip(path string) ([]byte, error) {
	data, err := checkpoint.ReadSideFile(path)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	if isGzip(data) {
		return gunzip(data, path)
	}
	return data, nil
}

func parseOpenAI(data []byte, name string) (*Tokenizer, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("clip tokenizer: %s is not UTF-8 text", name)
	}
	text := strings.TrimSuffix(string(data), "\n")
	lines := strings.Split(text, "\n")
	if !strings.Contains(lines[0], "#version") {
		return nil, fmt.Errorf("clip tokenizer: %s: first line %q is not a merges file's \"#version\" header", name, truncateForError(lines[0]))
	}
	lines = lines[1:]
	if len(lines) > MaxMerges {
		lines = lines[:MaxMerges]
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("clip tokenizer: %s holds no merges", name)
	}
	pairs, err := parseMerges(lines, 2, name)
	if err != nil {
		return nil, err
	}
	// The vocabulary, in the reference's order. A later duplicate takes the
	// id, as dict(zip(vocab, range(len(vocab)))) does.
	order := tokenizers.BytesToUnicodeOrder()
	tokens := make([]string, 0, 512+len(pairs)+2)
	for _, b := range order {
		tokens = append(tokens, string(byteToRune[b]))
	}
	for _, b := range order {
		tokens = append(tokens, string(byteToRune[b])+endOfWord)
	}
	for _, p := range pairs {
		tokens = append(tokens, p[0]+p[1])
	}
	tokens = append(tokens, StartOfText, EndOfText)
	vocab := make(map[string]int, len(tokens))
	for id, tok := range tokens {
		vocab[tok] = id
	}
	return build(vocab, tokens, pairs, name, name)
}

// LoadHFTokenizer loads Hugging Face's vocab.json (token -> id) and
// merges.txt ("#version" header, then one merge per line), as
// CLIPTokenizer does: after the header, at most [MaxMerges] merges are used.
// Every byte symbol (with and without "</w>"), every merge's two symbols and
// result, and both special tokens must be in the vocabulary.
func LoadHFTokenizer(vocabPath, mergesPath string) (*Tokenizer, error) {
	vdata, err := checkpoint.ReadSideFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	mdata, err := checkpoint.ReadSideFile(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	return NewHFTokenizer(vdata, mdata, vocabPath, mergesPath)
}

// ByteVocab is Hugging Face's vocab.json of a CLIP tokenizer over bytes,
// with no merges: the 256 byte symbols (ids 0–255), the same with "</w>"
// (256–511), then the start and end of text (512, 513: the end token
// highest, as in CLIP's vocabulary). With an empty merges.txt it
// tokenizes any text without a vocabulary file, one token per byte.
func ByteVocab() []byte {
	vocab := map[string]int{}
	for b, r := range tokenizers.BytesToUnicode() {
		vocab[string(r)] = b
		vocab[string(r)+"</w>"] = 256 + b
	}
	vocab[StartOfText], vocab[EndOfText] = 512, 513
	data, err := json.Marshal(vocab)
	if err != nil {
		panic(err) // a map of strings to ints always marshals
	}
	return data
}

// ByteMerges is the merges.txt that goes with ByteVocab: none.
const ByteMerges = "#version: 0.2\n"

// NewByteTokenizer returns the tokenizer of ByteVocab (514 tokens).
func NewByteTokenizer() (*Tokenizer, error) {
	return NewHFTokenizer(ByteVocab(), []byte(ByteMerges), HFVocabFile, HFMergesFile)
}

// NewHFTokenizer is [LoadHFTokenizer] on the files' contents; vocabName and
// mergesName name them in errors.
func NewHFTokenizer(vocabJSON, mergesTxt []byte, vocabName, mergesName string) (*Tokenizer, error) {
	var vocab map[string]int
	dec := json.NewDecoder(bytes.NewReader(vocabJSON))
	if err := dec.Decode(&vocab); err != nil {
		return nil, fmt.Errorf("clip tokenizer: %s: not a JSON object of token ids: %w", vocabName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("clip tokenizer: %s: trailing data after the JSON object", vocabName)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("clip tokenizer: %s: empty vocabulary", vocabName)
	}
	maxID := -1
	for tok, id := range vocab {
		if id < 0 || id >= maxVocabID {
			return nil, fmt.Errorf("clip tokenizer: %s: token %q has id %d, outside [0, %d)", vocabName, truncateForError(tok), id, maxVocabID)
		}
		if tok == "" {
			return nil, fmt.Errorf("clip tokenizer: %s: empty token (id %d)", vocabName, id)
		}
		maxID = max(maxID, id)
	}
	tokens := make([]string, maxID+1)
	for tok, id := range vocab {
		if prev := tokens[id]; prev != "" {
			a, b := min(prev, tok), max(prev, tok) // deterministic message
			return nil, fmt.Errorf("clip tokenizer: %s: tokens %q and %q share id %d", vocabName, truncateForError(a), truncateForError(b), id)
		}
		tokens[id] = tok
	}

	if !utf8.Valid(mergesTxt) {
		return nil, fmt.Errorf("clip tokenizer: %s is not UTF-8 text", mergesName)
	}
	// merges_handle.read().strip().split("\n")[1:49152-256-2+1]
	lines := strings.Split(strings.TrimFunc(string(mergesTxt), isPySpace), "\n")
	if !strings.HasPrefix(lines[0], "#version") {
		return nil, fmt.Errorf("clip tokenizer: %s: first line %q is not a \"#version\" header", mergesName, truncateForError(lines[0]))
	}
	lines = lines[1:]
	if len(lines) > MaxMerges {
		lines = lines[:MaxMerges]
	}
	pairs, err := parseMerges(lines, 2, mergesName)
	if err != nil {
		return nil, err
	}
	return build(vocab, tokens, pairs, vocabName, mergesName)
}

// parseMerges splits merge lines into symbol pairs; firstLine is the file
// line number of lines[0], for errors.
func parseMerges(lines []string, firstLine int, name string) ([][2]string, error) {
	pairs := make([][2]string, len(lines))
	for i, line := range lines {
		f := strings.FieldsFunc(line, isPySpace)
		if len(f) != 2 {
			return nil, fmt.Errorf("clip tokenizer: %s: line %d: want a merge of two symbols, got %q", name, firstLine+i, truncateForError(line))
		}
		pairs[i] = [2]string{f[0], f[1]}
	}
	return pairs, nil
}

func truncateForError(s string) string {
	const n = 60
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// build checks that the vocabulary covers what encoding can produce and
// indexes the merges by symbol ids.
func build(vocab map[string]int, tokens []string, pairs [][2]string, vocabName, mergesName string) (*Tokenizer, error) {
	t := &Tokenizer{
		vocab:  vocab,
		tokens: tokens,
		merges: make(map[uint64]merge, len(pairs)),
		cache:  make(map[string][]int),
	}
	for b := 0; b < 256; b++ {
		sym := string(byteToRune[b])
		id, ok := vocab[sym]
		if !ok {
			return nil, fmt.Errorf("clip tokenizer: %s: byte symbol %q (byte 0x%02x) missing from the vocabulary", vocabName, sym, b)
		}
		t.initial[b] = id
		if id, ok = vocab[sym+endOfWord]; !ok {
			return nil, fmt.Errorf("clip tokenizer: %s: byte symbol %q missing from the vocabulary", vocabName, sym+endOfWord)
		}
		t.final[b] = id
	}
	var ok bool
	if t.sot, ok = vocab[StartOfText]; !ok {
		return nil, fmt.Errorf("clip tokenizer: %s: special token %s missing from the vocabulary", vocabName, StartOfText)
	}
	if t.eot, ok = vocab[EndOfText]; !ok {
		return nil, fmt.Errorf("clip tokenizer: %s: special token %s missing from the vocabulary", vocabName, EndOfText)
	}
	for rank, p := range pairs {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		res, okR := vocab[p[0]+p[1]]
		if !okA || !okB || !okR {
			missing := p[0] + p[1]
			if !okA {
				missing = p[0]
			} else if !okB {
				missing = p[1]
			}
			return nil, fmt.Errorf("clip tokenizer: %s: line %d, merge %q %q: %q is not in the vocabulary (%s)",
				mergesName, rank+2, p[0], p[1], missing, vocabName)
		}
		// dict(zip(merges, range(len(merges)))): a repeated merge keeps its
		// last rank.
		t.merges[pairKey(a, b)] = merge{rank: int32(rank), id: int32(res)}
	}
	return t, nil
}

// VocabSize returns the number of token ids (the largest id + 1).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// StartOfTextID returns the id of [StartOfText] (49406 for CLIP).
func (t *Tokenizer) StartOfTextID() int { return t.sot }

// EndOfTextID returns the id of [EndOfText] (49407 for CLIP), the largest id
// of a full vocabulary.
func (t *Tokenizer) EndOfTextID() int { return t.eot }

// TokenID returns the id of a vocabulary token (in byte-level form, e.g.
// "cat</w>").
func (t *Tokenizer) TokenID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// Token returns the vocabulary token of an id, in byte-level form.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
		return "", false
	}
	return t.tokens[id], true
}

// Encode returns the token ids of text without start and end tokens, as
// SimpleTokenizer.encode does. A literal "<|startoftext|>" or
// "<|endoftext|>" in the text becomes the special token, as in the
// reference.
func (t *Tokenizer) Encode(text string) []int {
	return t.AppendEncode(nil, text)
}

// AppendEncode appends the ids of [Tokenizer.Encode] to dst.
func (t *Tokenizer) AppendEncode(dst []int, text string) []int {
	splitWords(CleanText(text), func(word string) {
		dst = t.appendWord(dst, word)
	})
	return dst
}

// Words returns the pieces the reference's pattern splits cleaned text into
// (re.findall(pat, CleanText(text))), before byte-level BPE.
func Words(text string) []string {
	var words []string
	splitWords(CleanText(text), func(word string) { words = append(words, word) })
	return words
}

func (t *Tokenizer) appendWord(dst []int, word string) []int {
	switch word {
	case StartOfText:
		return append(dst, t.sot)
	case EndOfText:
		return append(dst, t.eot)
	}
	t.mu.RLock()
	ids, ok := t.cache[word]
	t.mu.RUnlock()
	if ok {
		return append(dst, ids...)
	}
	ids = t.bpe(word)
	t.mu.Lock()
	if len(t.cache) >= maxCacheEntries {
		clear(t.cache)
	}
	t.cache[strings.Clone(word)] = ids // word points into the whole text
	t.mu.Unlock()
	return append(dst, ids...)
}

// bpe is SimpleTokenizer.bpe on the byte-level form of word, on ids: each
// byte is one symbol, the last one carrying "</w>"; the lowest-ranked
// adjacent pair that is a merge is merged everywhere (left to right, not
// overlapping) until no adjacent pair is a merge.
func (t *Tokenizer) bpe(word string) []int {
	n := len(word)
	syms := make([]int, n)
	for i := 0; i < n-1; i++ {
		syms[i] = t.initial[word[i]]
	}
	syms[n-1] = t.final[word[n-1]]
	for len(syms) > 1 {
		best := merge{rank: -1}
		var left, right int
		for i := 0; i+1 < len(syms); i++ {
			if m, ok := t.merges[pairKey(syms[i], syms[i+1])]; ok && (best.rank < 0 || m.rank < best.rank) {
				best, left, right = m, syms[i], syms[i+1]
			}
		}
		if best.rank < 0 {
			break
		}
		out := syms[:0] // in place: the write index never passes the read index
		for i := 0; i < len(syms); {
			if i+1 < len(syms) && syms[i] == left && syms[i+1] == right {
				out = append(out, int(best.id))
				i += 2
			} else {
				out = append(out, syms[i])
				i++
			}
		}
		syms = out
	}
	return syms[:len(syms):len(syms)]
}

// Tokenize returns the [ContextLength] (77) ids CLIP's text encoder takes
// for text and the position it pools at, as clip.tokenize(text,
// truncate=True): start token, the text's tokens, end token, zeros after.
// A text with more than 75 tokens is cut to 77 ids whose last is replaced by
// the end token.
//
// eot is the position of the first end token, which is where CLIP pools (the
// argmax of the ids, EndOfText having the largest id); it is the appended
// end token unless the text itself contains "<|endoftext|>".
func (t *Tokenizer) Tokenize(text string) (ids []int, eot int) {
	ids, eot, _ = t.TokenizeLength(text, ContextLength, true)
	return ids, eot
}

// TokenizeLength is [Tokenizer.Tokenize] for any context length (at least
// 1). Without truncate a text that does not fit is an error wrapping
// [ErrTooLong], as clip.tokenize(truncate=False) raises.
func (t *Tokenizer) TokenizeLength(text string, contextLength int, truncate bool) (ids []int, eot int, err error) {
	if contextLength < 1 {
		return nil, 0, fmt.Errorf("clip tokenizer: context length %d, want at least 1", contextLength)
	}
	toks := make([]int, 1, contextLength+8)
	toks[0] = t.sot
	toks = t.AppendEncode(toks, text)
	toks = append(toks, t.eot)
	if len(toks) > contextLength {
		if !truncate {
			return nil, 0, fmt.Errorf("clip tokenizer: input %q (%d tokens): %w %d", truncateForError(text), len(toks), ErrTooLong, contextLength)
		}
		toks = toks[:contextLength]
		toks[contextLength-1] = t.eot
	}
	ids = make([]int, contextLength) // zero padding
	copy(ids, toks)
	for i, id := range toks {
		if id == t.eot {
			return ids, i, nil
		}
	}
	return ids, len(toks) - 1, nil // unreachable: toks ends with eot
}

// Decode turns ids back into text as SimpleTokenizer.decode does: the
// tokens' bytes decoded as UTF-8 (each maximal invalid sequence becoming
// U+FFFD, as Python's errors="replace"), with every "</w>" replaced by a
// space. Special tokens decode to their text; padding zeros decode to '!'
// (token 0), as in the reference.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	var buf []byte
	for _, id := range ids {
		tok, ok := t.Token(id)
		if !ok {
			return "", fmt.Errorf("clip tokenizer: decode: id %d is not in the vocabulary (size %d)", id, len(t.tokens))
		}
		b, err := tokenizers.DecodeBytes(tok)
		if err != nil {
			return "", fmt.Errorf("clip tokenizer: decode: token %d %q: %w", id, tok, err)
		}
		buf = append(buf, b...)
	}
	return strings.ReplaceAll(pyDecodeUTF8Replace(buf), endOfWord, " "), nil
}

// pyDecodeUTF8Replace decodes b as Python's bytes.decode("utf-8",
// errors="replace"): each maximal subpart of an invalid sequence becomes one
// U+FFFD.
func pyDecodeUTF8Replace(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			sb.WriteRune(r)
			b = b[size:]
			continue
		}
		sb.WriteRune(utf8.RuneError)
		b = b[maximalSubpart(b):]
	}
	return sb.String()
}

// maximalSubpart returns the length of the longest prefix of b (at least 1)
// that starts a well-formed UTF-8 sequence without completing it.
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // range of the second byte
	switch {
	case 0xC2 <= c && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case 0xE1 <= c && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case 0xF1 <= c && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) {
		if n == 1 && (b[1] < lo || b[1] > hi) {
			break
		}
		if n > 1 && (b[n] < 0x80 || b[n] > 0xBF) {
			break
		}
		n++
	}
	return n
}

// byteToRune is GPT-2/CLIP's byte-to-unicode table (bytes_to_unicode), shared
// with the LLM tokenizers.
var byteToRune = tokenizers.BytesToUnicode()
