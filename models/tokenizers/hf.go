package tokenizers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"

	"github.com/editkit/editkit/checkpoint"
)

// TokenizerConfigFile is the Hugging Face file beside tokenizer.json that
// names the BOS and EOS tokens.
const TokenizerConfigFile = "tokenizer_config.json"

// maxHFCache bounds the per-word cache; a full cache starts over.
const maxHFCache = 1 << 16

// HF is a byte-level BPE tokenizer read from a Hugging Face tokenizer.json,
// the kind GPT-2, LLaMA-3 and Qwen2 ship: model.type "BPE" with vocab and
// merges (as "a b" strings or ["a", "b"] pairs), a ByteLevel pre-tokenizer
// (its GPT-2 pattern when use_regex is set) optionally after Split steps
// with their own pattern, and added tokens.
//
// Encoding follows the tokenizers library: added tokens are cut out of the
// raw text first (longest first at each position; lstrip/rstrip take the
// whitespace beside them), the rest is normalized (none or NFC), split into
// pieces by each pre-tokenizer step in order, each piece's UTF-8 bytes are
// mapped to runes ([BytesToUnicode]) and merged by rank (lowest first, the
// leftmost among equal ranks; with ignore_merges a piece that is itself in
// the vocabulary is taken whole). Patterns run on Go's regexp after
// translation (see compileSplitRegex): \s is Unicode White_Space as in
// Oniguruma, and the `\s+(?!\S)` lookahead is emulated.
//
// Not supported, with an error at load time: other model types (WordPiece,
// Unigram, WordLevel), byte_fallback (LLaMA-2 style files: use
// tokenizer.model), dropout, continuing_subword_prefix and
// end_of_word_suffix, normalizers other than NFC (and sequences of it),
// pre-tokenizers other than ByteLevel and Split (Split only with the
// "Isolated" behaviour and no invert; ByteLevel last), single_word added
// tokens, and pattern features Go's regexp lacks. Added tokens are matched
// in the raw text whether or not they are marked normalized.
type HF struct {
	vocab        map[string]int
	tokens       []string // id -> token ("" for ids no token has)
	merges       map[uint64]hfMerge
	ignoreMerges bool
	unk          int
	nfc          bool
	steps        []hfStep
	added        []hfAdded // longest content first
	special      map[int]bool
	bos, eos     int

	mu    sync.Mutex
	cache map[string][]int
}

type hfMerge struct{ rank, id int }

type hfAdded struct {
	content        string
	id             int
	lstrip, rstrip bool
}

// hfStep is one pre-tokenizer step: a Split pattern, or ByteLevel (which may
// add a prefix space and split with the GPT-2 pattern).
type hfStep struct {
	re          *splitRegex
	prefixSpace bool
}

type hfFile struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type                    string          `json:"type"`
		Dropout                 *float64        `json:"dropout"`
		UnkToken                *string         `json:"unk_token"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

type hfComponent struct {
	Type          string          `json:"type"`
	Normalizers   []hfComponent   `json:"normalizers"`
	Pretokenizers []hfComponent   `json:"pretokenizers"`
	Processors    []hfComponent   `json:"processors"`
	AddPrefix     bool            `json:"add_prefix_space"`
	UseRegex      *bool           `json:"use_regex"`
	Behavior      string          `json:"behavior"`
	Invert        bool            `json:"invert"`
	Pattern       json.RawMessage `json:"pattern"`
	Single        []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
}

// LoadHF reads a Hugging Face tokenizer.json, and the BOS and EOS tokens from
// the tokenizer_config.json beside it when there is one.
func LoadHF(path string) (*HF, error) {
	data, err := checkpoint.ReadSideFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	var cfg []byte
	if c, err := checkpoint.ReadSideFile(filepath.Join(filepath.Dir(path), TokenizerConfigFile)); err == nil {
		cfg = c
	}
	t, err := ParseHF(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ParseHF reads a tokenizer.json from its bytes; config, when not nil, is a
// tokenizer_config.json whose bos_token and eos_token name the BOS and EOS
// tokens. Without it they come from the post-processor's template (the
// special tokens before and after the sequence) or else from well-known
// names (<|begin_of_text|>, <s>; <|end_of_text|>, <|endoftext|>, </s>).
func ParseHF(data, config []byte) (*HF, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	m := &f.Model
	switch {
	case m.Type != "BPE" && !(m.Type == "" && m.Merges != nil):
		if m.Type == "" {
			return nil, errors.New("model has no type: only BPE models are supported")
		}
		return nil, fmt.Errorf("model type %q is not supported (only byte-level BPE)", m.Type)
	case m.ByteFallback:
		return nil, errors.New("model.byte_fallback is not supported (a SentencePiece-style BPE: load tokenizer.model instead)")
	case m.Dropout != nil && *m.Dropout > 0:
		return nil, fmt.Errorf("model.dropout %g is not supported", *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return nil, fmt.Errorf("model.continuing_subword_prefix %q is not supported", *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, fmt.Errorf("model.end_of_word_suffix %q is not supported", *m.EndOfWordSuffix)
	case len(m.Vocab) == 0:
		return nil, errors.New("model.vocab is empty")
	}
	t := &HF{vocab: m.Vocab, ignoreMerges: m.IgnoreMerges, unk: -1, special: map[int]bool{}, cache: map[string][]int{}}
	maxID := -1
	for tok, id := range m.Vocab {
		if id < 0 || id > 1<<26 {
			return nil, fmt.Errorf("model.vocab: token %q has id %d, out of range", tok, id)
		}
		maxID = max(maxID, id)
	}
	for i, a := range f.AddedTokens {
		if a.ID < 0 || a.ID > 1<<26 {
			return nil, fmt.Errorf("added_tokens[%d] %q: id %d is out of range", i, a.Content, a.ID)
		}
		maxID = max(maxID, a.ID)
	}
	t.tokens = make([]string, maxID+1)
	for tok, id := range m.Vocab {
		t.tokens[id] = tok
	}
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q is not in the vocabulary", *m.UnkToken)
		}
		t.unk = id
	}
	if err := t.readMerges(m.Merges); err != nil {
		return nil, err
	}
	for i, a := range f.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("added_tokens[%d]: empty content", i)
		}
		if a.SingleWord {
			return nil, fmt.Errorf("added_tokens[%d] %q: single_word is not supported", i, a.Content)
		}
		t.tokens[a.ID] = a.Content
		t.added = append(t.added, hfAdded{content: a.Content, id: a.ID, lstrip: a.LStrip, rstrip: a.RStrip})
		if a.Special {
			t.special[a.ID] = true
		}
	}
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].content) > len(t.added[j].content) })
	var err error
	if t.nfc, err = readNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.steps, err = readPreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if err := t.findBOSEOS(f.PostProcessor, config); err != nil {
		return nil, err
	}
	return t, nil
}

func pairKey(a, b int) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }

// readMerges reads merges as "a b" strings or ["a", "b"] pairs.
func (t *HF) readMerges(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		t.merges = map[uint64]hfMerge{}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("model.merges: not a list: %w", err)
	}
	t.merges = make(map[uint64]hfMerge, len(items))
	for rank, it := range items {
		var a, b string
		var s string
		var pair []string
		switch {
		case json.Unmarshal(it, &s) == nil:
			var ok bool
			if a, b, ok = strings.Cut(s, " "); !ok || strings.Contains(b, " ") {
				return fmt.Errorf("model.merges[%d] %q: expected two tokens separated by one space", rank, s)
			}
		case json.Unmarshal(it, &pair) == nil && len(pair) == 2:
			a, b = pair[0], pair[1]
		default:
			return fmt.Errorf("model.merges[%d]: expected \"a b\" or [\"a\", \"b\"], got %s", rank, it)
		}
		ia, oka := t.vocab[a]
		ib, okb := t.vocab[b]
		id, okm := t.vocab[a+b]
		switch {
		case !oka:
			return fmt.Errorf("model.merges[%d]: token %q is not in the vocabulary", rank, a)
		case !okb:
			return fmt.Errorf("model.merges[%d]: token %q is not in the vocabulary", rank, b)
		case !okm:
			return fmt.Errorf("model.merges[%d]: merged token %q is not in the vocabulary", rank, a+b)
		}
		if _, dup := t.merges[pairKey(ia, ib)]; !dup {
			t.merges[pairKey(ia, ib)] = hfMerge{rank: rank, id: id}
		}
	}
	return nil
}

// readNormalizer accepts none, NFC, and sequences of NFC.
func readNormalizer(raw json.RawMessage) (nfc bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return false, fmt.Errorf("normalizer: %w", err)
	}
	var walk func(c hfComponent) error
	walk = func(c hfComponent) error {
		switch c.Type {
		case "NFC":
			nfc = true
		case "Sequence":
			for _, n := range c.Normalizers {
				if err := walk(n); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("normalizer %q is not supported (only NFC, or none)", c.Type)
		}
		return nil
	}
	return nfc, walk(c)
}

// readPreTokenizer accepts ByteLevel, or a Sequence of Split steps ending in
// ByteLevel.
func readPreTokenizer(raw json.RawMessage) ([]hfStep, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("pre_tokenizer is missing: only byte-level BPE (a ByteLevel pre-tokenizer) is supported")
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	list := []hfComponent{c}
	if c.Type == "Sequence" {
		list = c.Pretokenizers
	}
	var steps []hfStep
	for i, p := range list {
		switch p.Type {
		case "ByteLevel":
			if i != len(list)-1 {
				return nil, errors.New("pre_tokenizer: ByteLevel must be the last step")
			}
			s := hfStep{prefixSpace: p.AddPrefix}
			if p.UseRegex == nil || *p.UseRegex {
				re, err := compileSplitRegex(GPT2Pattern)
				if err != nil {
					return nil, err
				}
				s.re = re
			}
			steps = append(steps, s)
		case "Split":
			if p.Behavior != "Isolated" {
				return nil, fmt.Errorf("pre_tokenizer: Split behavior %q is not supported (only Isolated)", p.Behavior)
			}
			if p.Invert {
				return nil, errors.New("pre_tokenizer: Split with invert is not supported")
			}
			var pat struct{ Regex, String *string }
			if err := json.Unmarshal(p.Pattern, &pat); err != nil {
				return nil, fmt.Errorf("pre_tokenizer: Split pattern: %w", err)
			}
			var expr string
			switch {
			case pat.Regex != nil:
				expr = *pat.Regex
			case pat.String != nil:
				expr = regexpQuote(*pat.String)
			default:
				return nil, errors.New("pre_tokenizer: Split pattern has neither Regex nor String")
			}
			re, err := compileSplitRegex(expr)
			if err != nil {
				return nil, fmt.Errorf("pre_tokenizer: Split %w", err)
			}
			steps = append(steps, hfStep{re: re})
		default:
			return nil, fmt.Errorf("pre_tokenizer %q is not supported (only ByteLevel, after optional Split steps)", p.Type)
		}
	}
	if len(steps) == 0 || list[len(list)-1].Type != "ByteLevel" {
		return nil, errors.New("pre_tokenizer has no ByteLevel step: only byte-level BPE is supported")
	}
	return steps, nil
}

// regexpQuote escapes a literal for the pattern translator.
func regexpQuote(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// findBOSEOS sets the BOS and EOS ids.
func (t *HF) findBOSEOS(post json.RawMessage, config []byte) error {
	t.bos, t.eos = -1, -1
	if config != nil {
		var c map[string]json.RawMessage
		if err := json.Unmarshal(config, &c); err != nil {
			return fmt.Errorf("%s: invalid JSON: %w", TokenizerConfigFile, err)
		}
		for key, dst := range map[string]*int{"bos_token": &t.bos, "eos_token": &t.eos} {
			name, ok, err := configToken(c[key])
			if err != nil {
				return fmt.Errorf("%s: %s: %w", TokenizerConfigFile, key, err)
			}
			if !ok {
				continue
			}
			id, found := t.id(name)
			if !found {
				return fmt.Errorf("%s: %s %q is not a token of tokenizer.json", TokenizerConfigFile, key, name)
			}
			*dst = id
		}
		return nil
	}
	if len(post) > 0 && string(post) != "null" {
		var c hfComponent
		if err := json.Unmarshal(post, &c); err == nil {
			list := append([]hfComponent{c}, c.Processors...)
			for _, p := range list {
				if p.Type != "TemplateProcessing" {
					continue
				}
				seen := false
				for _, it := range p.Single {
					switch {
					case it.Sequence != nil:
						seen = true
					case it.SpecialToken != nil && !seen && t.bos < 0:
						t.bos, _ = t.idOr(it.SpecialToken.ID)
					case it.SpecialToken != nil && seen && t.eos < 0:
						t.eos, _ = t.idOr(it.SpecialToken.ID)
					}
				}
			}
		}
	}
	if t.bos < 0 {
		t.bos = t.firstOf("<|begin_of_text|>", "<s>", "<|startoftext|>")
	}
	if t.eos < 0 {
		t.eos = t.firstOf("<|end_of_text|>", "<|endoftext|>", "</s>")
	}
	return nil
}

// configToken reads a tokenizer_config.json token entry: a string, an
// object with "content", or null/absent.
func configToken(raw json.RawMessage) (string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Content == nil {
		return "", false, fmt.Errorf("expected a string or an object with \"content\", got %s", raw)
	}
	return *o.Content, true, nil
}

// id finds a token by its text among added tokens and the vocabulary.
func (t *HF) id(tok string) (int, bool) {
	for _, a := range t.added {
		if a.content == tok {
			return a.id, true
		}
	}
	id, ok := t.vocab[tok]
	return id, ok
}

func (t *HF) idOr(tok string) (int, bool) {
	if id, ok := t.id(tok); ok {
		return id, true
	}
	return -1, false
}

func (t *HF) firstOf(names ...string) int {
	for _, n := range names {
		if id, ok := t.id(n); ok {
			return id
		}
	}
	return -1
}

// VocabSize is one more than the largest id of the vocabulary and the added
// tokens.
func (t *HF) VocabSize() int { return len(t.tokens) }

// BOS is the begin-of-sequence id, or -1.
func (t *HF) BOS() int { return t.bos }

// EOS is the end-of-sequence id, or -1.
func (t *HF) EOS() int { return t.eos }

// Token returns the vocabulary string of id (byte-level runes) or an added
// token's content; "" when out of range.
func (t *HF) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Encode tokenizes text; bos and eos add those ids where the tokenizer has
// them.
func (t *HF) Encode(text string, bos, eos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	t.splitAdded(text, func(seg string, added int) {
		if added >= 0 {
			ids = append(ids, added)
			return
		}
		ids = t.encodeSegment(ids, seg)
	})
	if eos && t.eos >= 0 {
		ids = append(ids, t.eos)
	}
	return ids
}

// splitAdded cuts text at added tokens: fn gets each plain segment with
// added = -1 and each added token with its id.
func (t *HF) splitAdded(text string, fn func(seg string, added int)) {
	if len(t.added) == 0 {
		fn(text, -1)
		return
	}
	start := 0 // start of the pending plain segment
	for i := 0; i < len(text); {
		var hit *hfAdded
		for k := range t.added {
			if strings.HasPrefix(text[i:], t.added[k].content) {
				hit = &t.added[k]
				break // longest first
			}
		}
		if hit == nil {
			i++
			continue
		}
		end := i + len(hit.content)
		segEnd := i
		if hit.lstrip {
			segEnd = start + len(strings.TrimRightFunc(text[start:i], isUnicodeSpace))
		}
		if hit.rstrip {
			end = len(text) - len(strings.TrimLeftFunc(text[end:], isUnicodeSpace))
		}
		if segEnd > start {
			fn(text[start:segEnd], -1)
		}
		fn("", hit.id)
		start, i = end, end
	}
	if start < len(text) {
		fn(text[start:], -1)
	}
}

func isUnicodeSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return 0x2000 <= r && r <= 0x200A
}

// encodeSegment normalizes, pre-tokenizes and merges a segment without
// added tokens, appending its ids to ids.
func (t *HF) encodeSegment(ids []int, seg string) []int {
	if t.nfc {
		seg = norm.NFC.String(seg)
	}
	pieces := []string{seg}
	for _, st := range t.steps {
		var next []string
		for _, p := range pieces {
			if st.prefixSpace && !strings.HasPrefix(p, " ") {
				p = " " + p
			}
			if st.re == nil {
				next = append(next, p)
				continue
			}
			st.re.split(p, func(s string) { next = append(next, s) })
		}
		pieces = next
	}
	for _, p := range pieces {
		if p != "" {
			ids = append(ids, t.word(EncodeBytes(p))...)
		}
	}
	return ids
}

// word returns the ids of one byte-level piece.
func (t *HF) word(w string) []int {
	t.mu.Lock()
	ids, ok := t.cache[w]
	t.mu.Unlock()
	if ok {
		return ids
	}
	ids = t.bpe(w)
	t.mu.Lock()
	if len(t.cache) >= maxHFCache {
		t.cache = map[string][]int{}
	}
	t.cache[w] = ids
	t.mu.Unlock()
	return ids
}

// bpe merges the runes of w by rank: the pair with the lowest rank first,
// the leftmost among equal ranks, as the tokenizers library's priority
// queue does. Runes missing from the vocabulary become the unknown token,
// or are dropped when there is none (as the library does).
func (t *HF) bpe(w string) []int {
	if t.ignoreMerges {
		if id, ok := t.vocab[w]; ok {
			return []int{id}
		}
	}
	var ids []int
	for _, r := range w {
		if id, ok := t.vocab[string(r)]; ok {
			ids = append(ids, id)
		} else if t.unk >= 0 {
			ids = append(ids, t.unk)
		}
	}
	if len(ids) < 2 {
		return ids
	}
	// cand[i] is the merge of ids[i] and ids[i+1] (rank -1: none).
	cand := make([]hfMerge, len(ids)-1)
	pair := func(i int) hfMerge {
		if m, ok := t.merges[pairKey(ids[i], ids[i+1])]; ok {
			return m
		}
		return hfMerge{rank: -1}
	}
	for i := range cand {
		cand[i] = pair(i)
	}
	for {
		best := -1
		for i, m := range cand {
			if m.rank >= 0 && (best < 0 || m.rank < cand[best].rank) {
				best = i
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = cand[best].id
		ids = append(ids[:best+1], ids[best+2:]...)
		cand = append(cand[:best], cand[best+1:]...)
		if best > 0 {
			cand[best-1] = pair(best - 1)
		}
		if best < len(cand) {
			cand[best] = pair(best)
		}
	}
}

// tokenBytes is the ByteLevel decoder's view of one token: its runes'
// bytes when all are byte symbols, else its UTF-8 text (added tokens).
func (t *HF) tokenBytes(id int) []byte {
	tok := t.tokens[id]
	if b, err := DecodeBytes(tok); err == nil {
		return b
	}
	return []byte(tok)
}

// Decode returns the text of ids: special added tokens give nothing, the
// rest are joined as bytes and read as UTF-8 (invalid sequences become
// U+FFFD). Ids out of range are skipped.
func (t *HF) Decode(ids []int) string {
	var buf bytes.Buffer
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || t.special[id] {
			continue
		}
		buf.Write(t.tokenBytes(id))
	}
	return strings.ToValidUTF8(buf.String(), "\uFFFD")
}

// DecodeToken returns the bytes of one token (possibly part of a UTF-8
// character); special tokens give "". Byte-level BPE has no dummy prefix, so
// prev plays no part.
func (t *HF) DecodeToken(prev, id int) string {
	if id < 0 || id >= len(t.tokens) || t.special[id] {
		return ""
	}
	return string(t.tokenBytes(id))
}
