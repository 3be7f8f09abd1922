package clip

import (
	"github.com/editkit/editkit/models/tokenizers"

	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// openAIMergesPath is OpenAI's released merges file in the project's shared
// data (../shared/data/tokenizers/clip from the repository root).
var openAIMergesPath = filepath.Join("..", "..", "..", "shared", "data", "tokenizers", "clip", OpenAIVocabFile)

var (
	refOnce sync.Once
	refTok  *Tokenizer
	refErr  error
)

// refTokenizer loads OpenAI's merges file once. Without the shared data the
// test is skipped, except under CI, where the data is always laid out.
func refTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	if _, err := os.Stat(openAIMergesPath); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CLIP merges file missing under CI: %v", err)
		}
		tb.Skipf("CLIP merges file not available: %v", err)
	}
	refOnce.Do(func() { refTok, refErr = LoadOpenAITokenizer(openAIMergesPath) })
	if refErr != nil {
		tb.Fatal(refErr)
	}
	return refTok
}

// encodeCases are texts with the ids SimpleTokenizer.encode gives them (no
// start/end tokens).
//
// How the expected ids were established:
//   - ref: by running OpenAI's own clip/simple_tokenizer.py (openai/CLIP at
//     d05afc4) under CPython 3.11.7 with the regex module 2026.5.9, on the
//     same bpe_simple_vocab_16e6.txt.gz, with ftfy replaced by an identity
//     fix_text (ftfy is not installed here; none of these texts is one ftfy
//     would change). The reference package itself is not installable here.
//   - hand: additionally derived by hand from the merges file (the id of a
//     merged token is 512 + its 0-based merge rank, the rank being its line
//     number in the file minus 2), following the BPE steps noted.
//   - arith: additionally from the vocabulary layout alone: byte symbol
//     "c</w>" for printable ASCII c has id 256 + (c - '!').
var encodeCases = []struct {
	name string
	text string
	want []int
	how  string
}{
	// arith: a</w> = 256+('a'-'!') = 320. hand: cat</w>: c a (rank 260),
	// a t</w> (24) -> at</w>; c at</w> (1856) -> 2368. photo</w> = 1125 and
	// of</w> = 539 from ref.
	{"acceptance", "a photo of a cat", []int{320, 1125, 539, 320, 2368}, "ref, hand, arith"},
	// hand: dog</w>: d o (127) beats o g</w> (8043) -> do; do g</w> (1417)
	// -> 1929. arith: .</w> = 256+13 = 269.
	{"dog", "a photo of a dog.", []int{320, 1125, 539, 320, 1929, 269}, "ref, hand, arith"},
	// hand: hello</w>: e l (32) -> el; el l (314) -> ell; ell o</w> (2000)
	// -> ello</w>; h ello</w> (2794) -> 3306. world</w>: o r (11); w or
	// (129); l d</w> (218); wor ld</w> (490) -> 1002. arith: ,</w> = 267,
	// !</w> = 256.
	{"hello world", "Hello, World!", []int{3306, 267, 1002, 256}, "ref, hand, arith"},
	// The regex splits "'s" off; "2" is a number of its own. hand: it</w> =
	// i t</w> (73) -> 585; 's</w> = ' s</w> (56) -> 568; clock</w>: clo
	// ck</w> (6204) -> 6716. arith: 2</w> = 273, o</w> = 334, '</w> = 262.
	{"contraction and digit", "it's 2 o'clock", []int{585, 568, 273, 334, 262, 6716}, "ref, hand, arith"},
	// Numbers are split one digit per token ([\p{N}]). arith: 1</w>..5</w>
	// = 272..276.
	{"digits", "12345", []int{272, 273, 274, 275, 276}, "ref, arith"},
	{"decimal", "3.14159", []int{274, 269, 272, 275, 272, 276, 280}, "ref, arith"},
	// U+1F600 is F0 9F 98 80 = symbols ð Ł ĺ Ģ</w>; hand: ðŁ ĺ (156),
	// ðŁĺ Ģ</w> (6822) -> 7334.
	{"emoji", "😀", []int{7334}, "ref, hand"},
	{"emoji with skin tone", "👍🏽", []int{43722}, "ref"},
	// A CJK character without a merge of its own: three byte symbols.
	{"cjk", "猫", []int{163, 234, 360}, "ref"},
	{"accents", "naïve café", []int{1097, 35689, 563, 15304}, "ref"},
	// Python's lower() turns the last Σ into a final ς (U+03C2).
	{"final sigma", "ΟΔΟΣ", []int{138, 123, 138, 112, 138, 123, 139, 480}, "ref"},
	// Python's lower() maps İ to "i̇" (two code points).
	{"dotted capital I", "İstanbul", []int{328, 16384, 11231}, "ref"},
	// html.unescape twice: "&amp;lt;" -> "<"; &#127; is dropped; &#x41; is
	// 'A'. arith: <</w> = 256+27 = 283.
	{"html entities", "&amp;lt; &#127; &#x41;", []int{283, 320}, "ref, arith"},
	{"whitespace", "  Multiple\t\nspaces\u00a0and\u3000ideographic  ", []int{6470, 9006, 537, 1909, 78, 4245}, "ref"},
	// Special tokens written in the text are kept as special tokens.
	{"literal special tokens", "<|startoftext|>hi<|endoftext|>", []int{49406, 1883, 49407}, "ref"},
	{"uppercase contractions", "DON'T YOU'LL", []int{847, 713, 592, 1342}, "ref"},
	// U+0345 matches no alternative of the regex under IGNORECASE: dropped.
	{"ypogegrammeni", "x\u0345y", []int{343, 344}, "ref"},
	{"punctuation run", "rock'n'roll!!!", []int{2172, 262, 333, 262, 3341, 995}, "ref"},
	{"email", "e-mail: user@example.com", []int{324, 268, 2614, 281, 7031, 287, 6228, 269, 2464}, "ref"},
	{"shrug", `¯\_(ツ)_/¯`, []int{45115, 32173, 45781}, "ref"},
	{"empty", "", nil, "ref"},
	{"only whitespace", "   \n", nil, "ref"},
}

func TestTokenizerEncode(t *testing.T) {
	tok := refTokenizer(t)
	for _, c := range encodeCases {
		t.Run(c.name, func(t *testing.T) {
			got := tok.Encode(c.text)
			if !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, want %v (%s)", c.text, got, c.want, c.how)
			}
			// A second call is served from the cache and must agree.
			if again := tok.Encode(c.text); !slices.Equal(again, got) {
				t.Errorf("cached Encode(%q) = %v, first call %v", c.text, again, got)
			}
		})
	}
}

func TestTokenizerAcceptance(t *testing.T) {
	tok := refTokenizer(t)
	ids, eot := tok.Tokenize("a photo of a cat")
	want := []int{49406, 320, 1125, 539, 320, 2368, 49407}
	if len(ids) != ContextLength {
		t.Fatalf("len(ids) = %d, want %d", len(ids), ContextLength)
	}
	if !slices.Equal(ids[:len(want)], want) {
		t.Errorf("ids = %v, want %v then zeros", ids[:len(want)], want)
	}
	for i, id := range ids[len(want):] {
		if id != 0 {
			t.Fatalf("ids[%d] = %d, want zero padding", len(want)+i, id)
		}
	}
	if eot != 6 {
		t.Errorf("eot = %d, want 6", eot)
	}
	if tok.StartOfTextID() != StartOfTextID || tok.EndOfTextID() != EndOfTextID || tok.VocabSize() != 49408 {
		t.Errorf("sot %d eot %d vocab %d, want %d %d 49408", tok.StartOfTextID(), tok.EndOfTextID(), tok.VocabSize(), StartOfTextID, EndOfTextID)
	}
}

// argmax is how CLIP finds the pooled position: the first largest id.
func argmax(ids []int) int {
	best := 0
	for i, id := range ids {
		if id > ids[best] {
			best = i
		}
	}
	return best
}

func TestTokenizerContextLength(t *testing.T) {
	tok := refTokenizer(t)
	a := func(n int) string { return strings.Repeat("a ", n) }
	for _, c := range []struct {
		name     string
		text     string
		wantEOT  int
		wantBody []int // ids between the start token and the end token
	}{
		// 75 text tokens: start + 75 + end = 77, fits exactly.
		{"75 tokens fit", a(75), 76, slices.Repeat([]int{320}, 75)},
		// ref: "x"*300 is 75 tokens of "xxxx" (32035), the last "xxxx</w>"
		// (22819); it fits exactly.
		{"long word fits", strings.Repeat("x", 300), 76, append(slices.Repeat([]int{32035}, 74), 22819)},
		// 100 tokens: cut to 77 ids, the last replaced by the end token, as
		// clip.tokenize(truncate=True).
		{"truncated", a(100), 76, slices.Repeat([]int{320}, 75)},
		{"short", "a cat", 3, []int{320, 2368}},
		{"empty", "", 1, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids, eot := tok.Tokenize(c.text)
			if len(ids) != ContextLength || eot != c.wantEOT || argmax(ids) != eot {
				t.Fatalf("len %d eot %d argmax %d, want %d, %d, eot", len(ids), eot, argmax(ids), ContextLength, c.wantEOT)
			}
			want := append(append([]int{StartOfTextID}, c.wantBody...), EndOfTextID)
			want = append(want, make([]int, ContextLength-len(want))...)
			if !slices.Equal(ids, want) {
				t.Errorf("ids = %v\nwant %v", ids, want)
			}
		})
	}

	if _, _, err := tok.TokenizeLength(a(75), ContextLength, false); err != nil {
		t.Errorf("75 tokens without truncation: %v", err)
	}
	_, _, err := tok.TokenizeLength(a(76), ContextLength, false)
	if !errors.Is(err, ErrTooLong) {
		t.Errorf("76 tokens without truncation: err %v, want ErrTooLong", err)
	}
	ids, eot, err := tok.TokenizeLength("a photo of a cat", 4, true)
	if err != nil || !slices.Equal(ids, []int{49406, 320, 1125, 49407}) || eot != 3 {
		t.Errorf("context 4: %v %d %v", ids, eot, err)
	}
	if _, _, err := tok.TokenizeLength("a", 0, true); err == nil {
		t.Error("context length 0 accepted")
	}
}

// A text that spells <|endoftext|> has an earlier end token; CLIP pools
// there (argmax takes the first largest id), and so does eot.
func TestTokenizerEOTInText(t *testing.T) {
	tok := refTokenizer(t)
	ids, eot := tok.Tokenize("hi<|endoftext|> there")
	if eot != 2 || argmax(ids) != 2 || ids[2] != EndOfTextID {
		t.Errorf("ids %v eot %d", ids[:6], eot)
	}
}

func TestTokenizerDecode(t *testing.T) {
	tok := refTokenizer(t)
	// Expected strings from the reference's SimpleTokenizer.decode (ref).
	for _, c := range []struct {
		ids  []int
		want string
	}{
		{[]int{3306, 267, 1002, 256}, "hello , world ! "},
		{[]int{1097, 35689, 563, 15304}, "naïve café "},
		{[]int{49406, 320, 49407}, "<|startoftext|>a <|endoftext|>"},
		{[]int{0, 0, 0}, "!!!"},           // zero padding decodes as '!'
		{[]int{163}, "\uFFFD"},            // E7 alone
		{[]int{163, 234}, "\uFFFD"},       // E7 8C: one maximal subpart, one U+FFFD
		{[]int{129}, "\uFFFD"},            // C5 alone
		{[]int{163, 234, 360}, "猫 "},      // complete again
		{[]int{129, 129}, "\uFFFD\uFFFD"}, // C5 C5: two subparts
	} {
		got, err := tok.Decode(c.ids)
		if err != nil || got != c.want {
			t.Errorf("Decode(%v) = %q, %v; want %q", c.ids, got, err, c.want)
		}
	}
	if _, err := tok.Decode([]int{49408}); err == nil {
		t.Error("Decode of an id past the vocabulary succeeded")
	}
	if _, err := tok.Decode([]int{-1}); err == nil {
		t.Error("Decode of a negative id succeeded")
	}
}

func TestTokenizerCleanText(t *testing.T) {
	// Expected values: whitespace_clean(basic_clean(s)).lower() from the
	// reference module under CPython 3.11.7 (ftfy as identity).
	for _, c := range []struct{ in, want string }{
		{"  Hello\t\n  World  ", "hello world"},
		{"&amp;lt;b&amp;gt;", "<b>"},        // unescaped twice
		{"&#127;x&#0;y&#128;", "x\uFFFDy€"}, // dropped, U+FFFD, cp1252
		{"AT&T &copy 2024", "at&t © 2024"},  // legacy name without ';'
		{"&notit;", "¬it;"},                 // longest-prefix rule
		{"&nLt;", "\u226A\u20D2"},           // two-code-point entity
		{"\x1cA\x1cB\x1c", "a\x1cb"},        // stripped, not collapsed
		{"a\u00a0\u2003b\u3000c", "a b c"},  // Unicode White_Space
		{"ΟΔΟΣ ΣΑ Σ", "οδος σα σ"},          // Final_Sigma only after a letter
		{"İ", "i\u0307"},                    // full lowercase mapping
		{"ẞ", "ß"},
		{"Ǆ", "ǆ"},
		{"x\u0345y", "x\u0345y"},
		{"bad\xffutf8", "bad\uFFFDutf8"}, // Go-only: invalid bytes become U+FFFD
	} {
		if got := CleanText(c.in); got != c.want {
			t.Errorf("CleanText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTokenizerWords(t *testing.T) {
	got := Words("It's <|endoftext|>2 ſ 'ſ COOL!!")
	// 'ſ matches the 's alternative under IGNORECASE, as in the regex module.
	want := []string{"it", "'s", "<|endoftext|>", "2", "ſ", "'ſ", "cool", "!!"}
	if !slices.Equal(got, want) {
		t.Errorf("Words = %q, want %q", got, want)
	}
}

// refPattern is the reference's pre-tokenization pattern in RE2 syntax, an
// independent oracle for the hand-written splitWords. Case folding is
// applied to the literals only, \s is spelt out as Unicode White_Space
// (RE2's \s is ASCII) and U+0345 is left out of the last class, which is how
// the regex module behaves (checked code point by code point against it).
var refPattern = regexp.MustCompile(`(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|` +
	`[^\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{345}\p{L}\p{N}]+`)

func checkSplit(t *testing.T, s string) {
	t.Helper()
	var got []string
	splitWords(s, func(w string) { got = append(got, w) })
	if want := refPattern.FindAllString(s, -1); !slices.Equal(got, want) {
		t.Fatalf("splitWords(%q) = %q, pattern gives %q", s, got, want)
	}
}

func TestTokenizerSplitMatchesPattern(t *testing.T) {
	// Every code point of the BMP and every 97th beyond, in contexts that
	// exercise each alternative and the boundaries between them.
	for cp := rune(0); cp <= utf8.MaxRune; cp++ {
		if cp > 0xFFFF && cp%97 != 0 || (0xD800 <= cp && cp <= 0xDFFF) {
			continue
		}
		c := string(cp)
		for _, s := range []string{c, "a" + c + "b", "1" + c + c + "2", "!" + c + "!", "'" + c + "x", "<|" + c, c + " " + c} {
			checkSplit(t, s)
		}
	}
	// Random strings over an alphabet of the pattern's corner cases.
	alphabet := []string{"a", "Z", "é", "ſ", "K", "ß", "猫", "1", "٣", "½", "Ⅻ", "!", ".", "'", "<", "|", ">",
		" ", "\t", "\u00a0", "\u3000", "\x1c", "\u0345", "\u0301", "😀", "\u200d", "s", "t", "re", "ve", "m", "ll", "d",
		"<|startoftext|>", "<|endoftext|>", "startoftext", "endoftext|>", "'S", "'LL", "'Re"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		checkSplit(t, sb.String())
	}
}

func FuzzTokenizerSplit(f *testing.F) {
	for _, s := range []string{"a photo of a cat", "it's 2 o'clock!!", "<|endoftext|>'ſ", "x\u0345y\u00a0z", "¯\\_(ツ)_/¯"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // splitWords sees cleaned, valid text only
		}
		checkSplit(t, s)
	})
}

// pyBytesToUnicode is bytes_to_unicode() transcribed statement by statement
// from the reference, to check the table and its order independently.
func pyBytesToUnicode() (bs []int, cs []rune) {
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := '¡'; b <= '¬'; b++ {
		bs = append(bs, int(b))
	}
	for b := '®'; b <= 'ÿ'; b++ {
		bs = append(bs, int(b))
	}
	for _, b := range bs {
		cs = append(cs, rune(b))
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !slices.Contains(bs, b) {
			bs = append(bs, b)
			cs = append(cs, rune(256+n))
			n++
		}
	}
	return bs, cs
}

func TestTokenizerBytesToUnicode(t *testing.T) {
	bs, cs := pyBytesToUnicode()
	table := tokenizers.BytesToUnicode()
	order := tokenizers.BytesToUnicodeOrder()
	seen := map[rune]bool{}
	for i := range 256 {
		if table[bs[i]] != cs[i] || int(order[i]) != bs[i] {
			t.Fatalf("entry %d: byte %d -> %q (order %d), want %q", i, bs[i], table[bs[i]], order[i], cs[i])
		}
		seen[table[i]] = true
	}
	if len(seen) != 256 {
		t.Fatalf("%d distinct runes, want 256", len(seen))
	}
	// Well-known GPT-2/CLIP symbols: space is 'Ġ', newline 'Ċ', the soft
	// hyphen 'Ń'.
	if table[' '] != 'Ġ' || table['\n'] != 'Ċ' || table[0xAD] != 'Ń' || table[0] != 'Ā' {
		t.Errorf("space %q newline %q shy %q nul %q", table[' '], table['\n'], table[0xAD], table[0])
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	enc := tokenizers.EncodeBytes(string(all))
	dec, err := tokenizers.DecodeBytes(enc)
	if err != nil || !bytes.Equal(dec, all) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := tokenizers.DecodeBytes("a b"); err == nil {
		t.Error("DecodeBytes accepted a space, which is no byte symbol")
	}
}

// writeHFFiles derives Hugging Face's vocab.json and merges.txt from
// OpenAI's merges file as HF's conversion does: the byte symbols in
// bytes_to_unicode order, the same with "</w>", each merge joined, then the
// two special tokens; merges.txt is the header and the merges.
func writeHFFiles(t *testing.T, dir string) (vocabPath, mergesPath string) {
	t.Helper()
	f, err := os.Open(openAIMergesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(raw.String(), "\n")[1 : MaxMerges+1]
	_, cs := pyBytesToUnicode()
	var vocab []string
	for _, r := range cs {
		vocab = append(vocab, string(r))
	}
	for _, r := range cs {
		vocab = append(vocab, string(r)+"</w>")
	}
	for _, l := range lines {
		vocab = append(vocab, strings.ReplaceAll(l, " ", ""))
	}
	vocab = append(vocab, "<|startoftext|>", "<|endoftext|>")
	m := make(map[string]int, len(vocab))
	for i, v := range vocab {
		m[v] = i
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	vocabPath, mergesPath = filepath.Join(dir, HFVocabFile), filepath.Join(dir, HFMergesFile)
	if err := os.WriteFile(vocabPath, js, 0o644); err != nil {
		t.Fatal(err)
	}
	merges := "#version: 0.2\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(mergesPath, []byte(merges), 0o644); err != nil {
		t.Fatal(err)
	}
	return vocabPath, mergesPath
}

func TestTokenizerHF(t *testing.T) {
	refTokenizer(t) // skip without the shared data
	dir := t.TempDir()
	vocabPath, mergesPath := writeHFFiles(t, dir)
	hf, err := LoadHFTokenizer(vocabPath, mergesPath)
	if err != nil {
		t.Fatal(err)
	}
	byDir, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*Tokenizer{hf, byDir} {
		if tok.StartOfTextID() != StartOfTextID || tok.EndOfTextID() != EndOfTextID || tok.VocabSize() != 49408 {
			t.Fatalf("sot %d eot %d vocab %d", tok.StartOfTextID(), tok.EndOfTextID(), tok.VocabSize())
		}
		for _, c := range encodeCases {
			if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
				t.Errorf("HF Encode(%q) = %v, want %v", c.text, got, c.want)
			}
		}
	}
}

func TestTokenizerLoadTokenizerPaths(t *testing.T) {
	refTokenizer(t)
	tok, err := LoadTokenizer(filepath.Dir(openAIMergesPath)) // folder with OpenAI's file
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a photo of a cat"); !slices.Equal(got, encodeCases[0].want) {
		t.Errorf("got %v", got)
	}
	// The same file uncompressed.
	data, err := readMaybeGzip(openAIMergesPath)
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "bpe_simple_vocab_16e6.txt")
	if err := os.WriteFile(plain, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, err = LoadTokenizer(plain); err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a photo of a cat"); !slices.Equal(got, encodeCases[0].want) {
		t.Errorf("plain file: got %v", got)
	}
}

// TestTokenizerSmallVocab needs no shared data: a three-merge file.
func TestTokenizerSmallVocab(t *testing.T) {
	merges := "#version: 0.2\nc a\nca t</w>\nh i</w>\n"
	tok, err := NewOpenAITokenizer(strings.NewReader(merges), "tiny.txt")
	if err != nil {
		t.Fatal(err)
	}
	// 256 + 256 byte symbols, ids 512.. for "ca", "cat</w>", "hi</w>", then
	// the special tokens.
	if tok.VocabSize() != 517 || tok.StartOfTextID() != 515 || tok.EndOfTextID() != 516 {
		t.Fatalf("vocab %d sot %d eot %d", tok.VocabSize(), tok.StartOfTextID(), tok.EndOfTextID())
	}
	// "cats": c a -> ca; no "ca t" merge, "t s</w>" unknown: ca t s</w>.
	// arith: t = 't'-'!' = 83, s</w> = 256+82 = 338.
	for _, c := range []struct {
		text string
		want []int
	}{
		{"CAT", []int{513}},
		{"hi cat", []int{514, 513}},
		{"cats", []int{512, 83, 338}},
		{"a", []int{320}},
	} {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	ids, eot := tok.Tokenize("hi cat")
	if !slices.Equal(ids[:4], []int{515, 514, 513, 516}) || eot != 3 {
		t.Errorf("Tokenize: %v %d", ids[:5], eot)
	}
	// Gzip-compressed input is recognised.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(merges))
	zw.Close()
	tok2, err := NewOpenAITokenizer(&gz, "tiny.txt.gz")
	if err != nil || !slices.Equal(tok2.Encode("hi cat"), []int{514, 513}) {
		t.Errorf("gzip: %v", err)
	}
}

func TestTokenizerLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gzBad bytes.Buffer
	zw := gzip.NewWriter(&gzBad)
	zw.Write([]byte("#version: 0.2\na b\n"))
	zw.Close()
	truncatedGz := write("trunc.txt.gz", gzBad.String()[:gzBad.Len()-6])

	goodVocab := func(drop string, extra map[string]int) string {
		m := map[string]int{}
		_, cs := pyBytesToUnicode()
		for i, r := range cs {
			m[string(r)] = i
			m[string(r)+"</w>"] = 256 + i
		}
		m["ab</w>"] = 512
		m[StartOfText] = 513
		m[EndOfText] = 514
		delete(m, drop)
		for k, v := range extra {
			m[k] = v
		}
		js, _ := json.Marshal(m)
		return string(js)
	}
	goodMerges := "#version: 0.2\na b</w>\n"

	for _, c := range []struct {
		name string
		load func() (*Tokenizer, error)
		want []string // substrings of the error
	}{
		{"missing file", func() (*Tokenizer, error) { return LoadOpenAITokenizer(filepath.Join(dir, "nope.txt.gz")) },
			[]string{"nope.txt.gz", "no such file"}},
		{"missing path", func() (*Tokenizer, error) { return LoadTokenizer(filepath.Join(dir, "nowhere")) },
			[]string{"nowhere"}},
		{"empty folder", func() (*Tokenizer, error) { return LoadTokenizer(t.TempDir()) },
			[]string{"vocab.json", "merges.txt", OpenAIVocabFile}},
		{"truncated gzip", func() (*Tokenizer, error) { return LoadOpenAITokenizer(truncatedGz) },
			[]string{"trunc.txt.gz", "gzip"}},
		{"no header", func() (*Tokenizer, error) { return LoadOpenAITokenizer(write("nohdr.txt", "a b\nc d\n")) },
			[]string{"nohdr.txt", "#version"}},
		{"no merges", func() (*Tokenizer, error) { return LoadOpenAITokenizer(write("empty.txt", "#version: 0.2\n")) },
			[]string{"empty.txt", "no merges"}},
		{"three symbols", func() (*Tokenizer, error) {
			return LoadOpenAITokenizer(write("three.txt", "#version: 0.2\na b\nc d e\n"))
		}, []string{"three.txt", "line 3", "c d e"}},
		{"blank merge line", func() (*Tokenizer, error) {
			return LoadOpenAITokenizer(write("blank.txt", "#version: 0.2\na b\n\nc d\n"))
		}, []string{"blank.txt", "line 3"}},
		{"not utf-8", func() (*Tokenizer, error) { return LoadOpenAITokenizer(write("bin.txt", "#version\n\xff\xfe\n")) },
			[]string{"bin.txt", "UTF-8"}},
		{"merge of unknown symbols", func() (*Tokenizer, error) {
			return LoadOpenAITokenizer(write("unk.txt", "#version: 0.2\nab c\n"))
		}, []string{"unk.txt", "line 2", `"ab"`}},
		{"hf missing vocab", func() (*Tokenizer, error) {
			return LoadHFTokenizer(filepath.Join(dir, "none.json"), write("m1.txt", goodMerges))
		}, []string{"none.json"}},
		{"hf missing merges", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v0.json", goodVocab("", nil)), filepath.Join(dir, "none.txt"))
		}, []string{"none.txt"}},
		{"hf bad json", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v1.json", `{"a": 1,`), write("m2.txt", goodMerges))
		}, []string{"v1.json", "JSON"}},
		{"hf json list", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v2.json", `["a"]`), write("m3.txt", goodMerges))
		}, []string{"v2.json"}},
		{"hf missing special", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v3.json", goodVocab(EndOfText, nil)), write("m4.txt", goodMerges))
		}, []string{"v3.json", EndOfText}},
		{"hf missing byte symbol", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v4.json", goodVocab("Ġ</w>", nil)), write("m5.txt", goodMerges))
		}, []string{"v4.json", "Ġ</w>"}},
		{"hf merge result missing", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v5.json", goodVocab("ab</w>", nil)), write("m6.txt", goodMerges))
		}, []string{"m6.txt", "ab</w>", "v5.json"}},
		{"hf shared id", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v6.json", goodVocab("", map[string]int{"zz": 3})), write("m7.txt", goodMerges))
		}, []string{"v6.json", "share id 3"}},
		{"hf negative id", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v7.json", goodVocab("", map[string]int{"zz": -1})), write("m8.txt", goodMerges))
		}, []string{"v7.json", "-1"}},
		{"hf merges without header", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v8.json", goodVocab("", nil)), write("m9.txt", "a b</w>\n"))
		}, []string{"m9.txt", "#version"}},
		{"hf malformed merge", func() (*Tokenizer, error) {
			return LoadHFTokenizer(write("v9.json", goodVocab("", nil)), write("m10.txt", "#version: 0.2\na b</w> c\n"))
		}, []string{"m10.txt", "line 2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := c.load()
			if err == nil {
				t.Fatalf("loaded %v, want an error", tok != nil)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// The good pair loads, as a control for the cases above.
	tok, err := LoadHFTokenizer(write("vok.json", goodVocab("", nil)), write("mok.txt", goodMerges))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("ab"); !slices.Equal(got, []int{512}) {
		t.Errorf("Encode(ab) = %v", got)
	}
}

func TestTokenizerConcurrent(t *testing.T) {
	tok := refTokenizer(t)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c := encodeCases[(g+i)%len(encodeCases)]
				text := c.text
				if i%3 == 0 {
					text = fmt.Sprintf("%s word%d", c.text, i) // new cache entries
				}
				got := tok.Encode(text)
				if i%3 != 0 && !slices.Equal(got, c.want) {
					errs <- fmt.Sprintf("Encode(%q) = %v", text, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

var benchTexts = []string{
	"a photo of a cat",
	"a photo of a dog.",
	"a blurry photo of the large red double-decker bus on a rainy street in London",
	"an origami sculpture of a crane, folded from a single sheet of paper",
	"a satellite image of farmland with irrigation circles",
}

func BenchmarkTokenizerTokenize(b *testing.B) {
	tok := refTokenizer(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tok.Tokenize(benchTexts[i%len(benchTexts)])
	}
}

// BenchmarkTokenizerEncodeUncached clears the BPE cache before each text, so
// every word goes through the merge loop.
func BenchmarkTokenizerEncodeUncached(b *testing.B) {
	tok := refTokenizer(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tok.mu.Lock()
		clear(tok.cache)
		tok.mu.Unlock()
		tok.Encode(benchTexts[i%len(benchTexts)])
	}
}

func BenchmarkTokenizerLoad(b *testing.B) {
	refTokenizer(b)
	for b.Loop() {
		if _, err := LoadOpenAITokenizer(openAIMergesPath); err != nil {
			b.Fatal(err)
		}
	}
}
