package tokenizers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// llama3Pattern is the Split pattern of LLaMA-3's tokenizer.json.
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// tinyMerges are the merges of the test vocabulary, in rank order; the
// merged tokens get ids 256, 257, ... in this order.
var tinyMerges = [][2]string{
	{"Ġ", "t"},     // 256 Ġt
	{"h", "e"},     // 257 he
	{"Ġt", "he"},   // 258 Ġthe
	{"i", "n"},     // 259 in
	{"Ġ", "a"},     // 260 Ġa
	{"l", "o"},     // 261 lo
	{"lo", "w"},    // 262 low
	{"e", "r"},     // 263 er
	{"Ġ", "low"},   // 264 Ġlow
	{"Ġlow", "er"}, // 265 Ġlower
	{"Ġ", "Ġ"},     // 266 ĠĠ
	{"Ċ", "Ċ"},     // 267 ĊĊ
	{"1", "2"},     // 268 12
	{"12", "3"},    // 269 123
}

// Ids after the merges: a vocabulary entry no merge builds, and the added
// tokens.
const (
	tinyXYZ  = 270 // "xyz", reachable only with ignore_merges
	tinyEOT  = 271 // <|endoftext|>, special
	tinyBOT  = 272 // <|begin_of_text|>, special
	tinyMask = 273 // <mask>, not special, lstrip
)

// tinyTokenizerJSON builds a tokenizer.json: the 256 byte symbols as ids
// 0-255 in bytes_to_unicode order (as GPT-2's vocabulary has them), the
// merges above, "xyz", and three added tokens. pre is the pre_tokenizer,
// extra more top-level or model fields.
func tinyTokenizerJSON(t *testing.T, pre string, pairMerges bool, modelExtra, top map[string]any) []byte {
	t.Helper()
	vocab := map[string]int{}
	for i, b := range BytesToUnicodeOrder() {
		vocab[string(BytesToUnicode()[b])] = i
	}
	var merges []any
	for i, m := range tinyMerges {
		vocab[m[0]+m[1]] = 256 + i
		if pairMerges {
			merges = append(merges, []string{m[0], m[1]})
		} else {
			merges = append(merges, m[0]+" "+m[1])
		}
	}
	vocab["xyz"] = tinyXYZ
	model := map[string]any{
		"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
		"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
		"vocab": vocab, "merges": merges,
	}
	for k, v := range modelExtra {
		model[k] = v
	}
	added := []map[string]any{
		{"id": tinyEOT, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
		{"id": tinyBOT, "content": "<|begin_of_text|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
		{"id": tinyMask, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": false},
	}
	doc := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added,
		"normalizer": nil, "pre_tokenizer": json.RawMessage(pre), "post_processor": nil,
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model":   model,
	}
	for k, v := range top {
		doc[k] = v
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

const (
	gpt2Pre   = `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`
	prefixPre = `{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`
)

func llama3Pre(t *testing.T) string {
	js, err := json.Marshal(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]string{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// b is the id of a byte's symbol in the test vocabulary.
func b(c byte) int {
	for i, x := range BytesToUnicodeOrder() {
		if x == c {
			return i
		}
	}
	panic("unreachable")
}

// The expected ids were derived by hand from the merges (the derivations
// are in the comments) and checked with Hugging Face's tokenizers library
// itself (its Node binding, tokenizers 0.23.2, loading the same JSON).
func TestHFEncode(t *testing.T) {
	const sp = 220 // Ġ, the space's symbol: bytes_to_unicode puts 0x20 at 188+32
	l3 := llama3Pre(t)
	cases := []struct {
		name  string
		pre   string
		model map[string]any
		top   map[string]any
		text  string
		want  []int
	}{
		// GPT-2 pattern: "the" " lower" " low". "the": h+e (rank 1) -> t, he;
		// "t he" is no merge. "Ġlower": l+o (5), lo+w (6), e+r (7), Ġ+low
		// (8), Ġlow+er (9). "Ġlow": lo, low, Ġlow.
		{"merges by rank", gpt2Pre, nil, nil, "the lower low", []int{b('t'), 257, 265, 264}},
		{"the after space", gpt2Pre, nil, nil, " the", []int{258}},
		// \s+(?!\S): of two spaces before "b" the first stands alone and
		// the second goes with b, so ĠĠ (rank 10) never forms; at the end
		// of the text the run stays whole.
		{"whitespace lookahead", gpt2Pre, nil, nil, "a  b  ", []int{b('a'), sp, sp, b('b'), 266}},
		// "\n\n" before b: the first alone (lookahead), the second by \s+;
		// ĊĊ never forms.
		{"newlines", gpt2Pre, nil, nil, "a\n\nb", []int{b('a'), 198, 198, b('b')}},
		{"newlines at the end", gpt2Pre, nil, nil, "a\n\n", []int{b('a'), 267}},
		{"digits", gpt2Pre, nil, nil, "12345", []int{269, b('4'), b('5')}},
		{"contraction", gpt2Pre, nil, nil, "it's", []int{b('i'), b('t'), b('\''), b('s')}},
		{"prefix space", prefixPre, nil, nil, "the", []int{258}},
		{"utf-8 bytes", gpt2Pre, nil, nil, "é", []int{b(0xC3), b(0xA9)}},
		// Added tokens are cut out first; <mask> takes the space on its
		// left (lstrip).
		{"added tokens", gpt2Pre, nil, nil, "the<|endoftext|> the <mask>", []int{b('t'), 257, tinyEOT, 258, tinyMask}},
		{"no ignore_merges", gpt2Pre, nil, nil, "xyz", []int{b('x'), b('y'), b('z')}},
		{"ignore_merges", gpt2Pre, map[string]any{"ignore_merges": true}, nil, "xyz", []int{tinyXYZ}},
		// LLaMA-3 pattern: numbers in groups of three, a letter run takes
		// one leading non-letter, "\s*[\r\n]+" takes newlines with the
		// spaces before them.
		{"llama3 digits", l3, nil, nil, "12345", []int{269, b('4'), b('5')}},
		{"llama3 words", l3, nil, nil, "the lower", []int{b('t'), 257, 265}},
		{"llama3 newlines", l3, nil, nil, "a \n\n b", []int{b('a'), sp, 267, sp, b('b')}},
		{"llama3 spaces", l3, nil, nil, "a   b", []int{b('a'), 266, sp, b('b')}},
		{"llama3 case-insensitive contraction", l3, nil, nil, "IT'S", []int{b('I'), b('T'), b('\''), b('S')}},
		// NFC composes e + U+0301 into é (C3 A9) before the byte mapping.
		{"nfc", gpt2Pre, nil, map[string]any{"normalizer": map[string]any{"type": "NFC"}}, "e\u0301", []int{b(0xC3), b(0xA9)}},
		{"no nfc", gpt2Pre, nil, nil, "e\u0301", []int{b('e'), b(0xCC), b(0x81)}},
		// Unicode whitespace (U+3000) is \s for Oniguruma, not for Go's \s.
		{"unicode space", gpt2Pre, nil, nil, "a\u3000\u3000b", []int{b('a'), b(0xE3), b(0x80), b(0x80), b(0xE3), b(0x80), b(0x80), b('b')}},
	}
	for _, c := range cases {
		for _, pairs := range []bool{false, true} {
			tok, err := ParseHF(tinyTokenizerJSON(t, c.pre, pairs, c.model, c.top), nil)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := tok.Encode(c.text, false, false); !slices.Equal(got, c.want) {
				t.Errorf("%s (pair merges %v): Encode(%q) = %v, want %v", c.name, pairs, c.text, got, c.want)
			}
		}
	}
}

func TestHFSplitPieces(t *testing.T) {
	cases := []struct {
		pattern, text string
		want          []string
	}{
		{GPT2Pattern, "Hello  world\n\n  it's", []string{"Hello", " ", " world", "\n\n ", " it", "'s"}},
		{GPT2Pattern, "x \t y", []string{"x", " \t", " y"}},
		{llama3Pattern, "Hello  world\n\n  12345 it's OK!!\n", []string{"Hello", " ", " world", "\n\n", " ", " ", "123", "45", " it", "'s", " OK", "!!\n"}},
		{`\d+`, "ab12cd", []string{"ab", "12", "cd"}},
		{`x*`, "axb", []string{"a", "x", "b"}}, // empty matches cut nothing
	}
	for _, c := range cases {
		re, err := compileSplitRegex(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		re.split(c.text, func(s string) { got = append(got, s) })
		if !slices.Equal(got, c.want) {
			t.Errorf("split(%q, %q) = %q, want %q", c.pattern, c.text, got, c.want)
		}
	}
}

func TestHFDecode(t *testing.T) {
	tok, err := ParseHF(tinyTokenizerJSON(t, gpt2Pre, false, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"the lower low", "a  b  ", "é日😀 x\n\ty", "it's 12345!"} {
		if got := tok.Decode(tok.Encode(s, true, true)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
	cases := []struct {
		ids  []int
		want string
	}{
		{[]int{tinyBOT, 258, tinyEOT}, " the"}, // special tokens give nothing
		{[]int{tinyMask, 258}, "<mask> the"},   // a non-special added token its content
		{[]int{b(0xC3)}, "\uFFFD"},             // half a character
		{[]int{-1, 9999, 258}, " the"},         // out of range ids are skipped
	}
	for _, c := range cases {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
	if got := tok.DecodeToken(0, b(0xC3)); got != "\xC3" {
		t.Errorf("DecodeToken of a byte = %q", got)
	}
	if got := tok.DecodeToken(0, tinyEOT); got != "" {
		t.Errorf("DecodeToken of a special token = %q", got)
	}
}

func TestHFBOSEOS(t *testing.T) {
	template := map[string]any{"post_processor": map[string]any{"type": "Sequence", "processors": []any{
		map[string]any{"type": "ByteLevel"},
		map[string]any{"type": "TemplateProcessing", "single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
			map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
		}},
	}}}
	cases := []struct {
		name     string
		top      map[string]any
		config   string
		bos, eos int
	}{
		{"well-known names", nil, "", tinyBOT, tinyEOT},
		{"template", template, "", tinyBOT, tinyEOT},
		{"tokenizer_config strings", nil, `{"bos_token": null, "eos_token": "<|endoftext|>"}`, -1, tinyEOT},
		{"tokenizer_config objects", nil, `{"bos_token": {"content": "<mask>"}, "eos_token": {"content": "<|begin_of_text|>"}}`, tinyMask, tinyBOT},
	}
	for _, c := range cases {
		var cfg []byte
		if c.config != "" {
			cfg = []byte(c.config)
		}
		tok, err := ParseHF(tinyTokenizerJSON(t, gpt2Pre, false, nil, c.top), cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if tok.BOS() != c.bos || tok.EOS() != c.eos {
			t.Errorf("%s: BOS %d EOS %d, want %d %d", c.name, tok.BOS(), tok.EOS(), c.bos, c.eos)
		}
		want := []int{258}
		if c.bos >= 0 {
			want = append([]int{c.bos}, want...)
		}
		want = append(want, c.eos)
		if got := tok.Encode(" the", true, true); !slices.Equal(got, want) {
			t.Errorf("%s: Encode with BOS/EOS = %v, want %v", c.name, got, want)
		}
	}
	if tok, _ := ParseHF(tinyTokenizerJSON(t, gpt2Pre, false, nil, nil), nil); tok.VocabSize() != tinyMask+1 {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), tinyMask+1)
	}
}

func TestHFUnsupported(t *testing.T) {
	cases := []struct {
		name  string
		pre   string
		model map[string]any
		top   map[string]any
		want  string
	}{
		{"wordpiece", gpt2Pre, map[string]any{"type": "WordPiece"}, nil, `model type "WordPiece" is not supported`},
		{"byte fallback", gpt2Pre, map[string]any{"byte_fallback": true}, nil, "byte_fallback is not supported"},
		{"dropout", gpt2Pre, map[string]any{"dropout": 0.1}, nil, "dropout 0.1 is not supported"},
		{"subword prefix", gpt2Pre, map[string]any{"continuing_subword_prefix": "##"}, nil, "continuing_subword_prefix"},
		{"suffix", gpt2Pre, map[string]any{"end_of_word_suffix": "</w>"}, nil, "end_of_word_suffix"},
		{"normalizer", gpt2Pre, nil, map[string]any{"normalizer": map[string]any{"type": "Lowercase"}}, `normalizer "Lowercase" is not supported`},
		{"nfkc in sequence", gpt2Pre, nil, map[string]any{"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "NFKC"}}}}, `normalizer "NFKC"`},
		{"metaspace", `{"type":"Metaspace","replacement":"▁"}`, nil, nil, `pre_tokenizer "Metaspace" is not supported`},
		{"no pre_tokenizer", `null`, nil, nil, "pre_tokenizer is missing"},
		{"split without bytelevel", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"a"},"behavior":"Isolated","invert":false}]}`, nil, nil, "no ByteLevel step"},
		{"split behavior", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"a"},"behavior":"Removed","invert":false},{"type":"ByteLevel","use_regex":false}]}`, nil, nil, `Split behavior "Removed"`},
		{"lookbehind", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?<=a)b"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]}`, nil, nil, "lookbehinds are not supported"},
		{"lookahead", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"a(?=b)"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]}`, nil, nil, "lookarounds and atomic groups are not supported"},
		{"merge out of vocab", gpt2Pre, map[string]any{"merges": []string{"q q"}}, nil, `merged token "qq" is not in the vocabulary`},
		{"bad merge", gpt2Pre, map[string]any{"merges": []string{"abc"}}, nil, "model.merges[0]"},
		{"unk not in vocab", gpt2Pre, map[string]any{"unk_token": "<unk>"}, nil, `unk_token "<unk>"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseHF(tinyTokenizerJSON(t, c.pre, false, c.model, c.top), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := ParseHF([]byte(`{"model": `), nil); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("truncated JSON: %v", err)
	}
}

func TestLoadPicksFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "holds none of") {
		t.Errorf("empty folder: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, HFTokenizerFile), tinyTokenizerJSON(t, gpt2Pre, false, nil, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenizerConfigFile), []byte(`{"eos_token": "<mask>"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A tiktoken file under the SentencePiece name is passed over.
	if err := os.WriteFile(filepath.Join(dir, SentencePieceFile), []byte("IQ== 0\nIg== 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*HF); !ok || tok.EOS() != tinyMask {
		t.Errorf("Load gave %T with EOS %d", tok, tok.EOS())
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing path: %v", err)
	}
	if _, err := Load(filepath.Join(dir, TokenizerConfigFile)); err == nil {
		t.Errorf("a tokenizer_config.json alone loaded")
	}
	bad := filepath.Join(t.TempDir(), "vocab.txt")
	os.WriteFile(bad, []byte("x"), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "unknown file type") {
		t.Errorf("unknown file: %v", err)
	}
	// The llama2.c tokenizer by folder.
	if p := tok512Path(t); p != "" {
		d := t.TempDir()
		data, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(d, Llama2CFile), data, 0o644)
		tok, err := Load(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tok.(*Llama2C); !ok {
			t.Errorf("Load gave %T", tok)
		}
	}
}

// TestConcurrentEncode runs the tokenizers from several goroutines (run
// with -race).
func TestConcurrentEncode(t *testing.T) {
	hf, err := ParseHF(tinyTokenizerJSON(t, gpt2Pre, false, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	toks := []Tokenizer{hf}
	dir := os.Getenv(EnvLLMData)
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "llm")
	}
	if l, err := LoadLlama2C(filepath.Join(dir, "tok512.bin")); err == nil { // else the shared data is absent: HF only
		toks = append(toks, l)
		sp, err := ParseSentencePiece(buildSPModel(tok512Pieces(l), llama2cOptions))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, sp)
	}
	texts := []string{"the lower low", "Once upon a time", "a  b\n\nc 12345 é"}
	for _, tk := range toks {
		want := make([][]int, len(texts))
		for i, s := range texts {
			want[i] = tk.Encode(s, true, true)
		}
		done := make(chan bool)
		for g := 0; g < 4; g++ {
			go func() {
				for k := 0; k < 50; k++ {
					i := k % len(texts)
					if got := tk.Encode(texts[i], true, true); !slices.Equal(got, want[i]) {
						t.Errorf("%T: concurrent Encode(%q) = %v, want %v", tk, texts[i], got, want[i])
					}
				}
				done <- true
			}()
		}
		for g := 0; g < 4; g++ {
			<-done
		}
	}
}
