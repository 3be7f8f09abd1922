package tokenizers

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// EnvLLMData names a folder holding stories260K.bin and tok512.bin, for
// running the tests against a copy outside ../shared.
const EnvLLMData = "EDITKIT_LLM_DATA"

// tok512Path returns the shared llama2.c tokenizer, or skips the test.
func tok512Path(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvLLMData)
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "llm")
	}
	p := filepath.Join(dir, "tok512.bin")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: %s is absent (the llama2.c tok512 tokenizer lives in ../shared/data/llm beside the repository, or set %s to a folder holding it)", p, EnvLLMData)
	}
	return p
}

func loadTok512(t *testing.T) *Llama2C {
	t.Helper()
	tok, err := LoadLlama2C(tok512Path(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tok512Cases are ids of the llama2.c tok512 vocabulary, established
// independently of this package in two ways:
//
//   - by hand from the vocabulary (dumped with a few lines of Python reading
//     the file format) for the short ones, following run.c's procedure: e.g.
//     "Lily" is " " (410) L (438) i (417) l (421) y (422); the pairs in the
//     vocabulary are " L" (307, score -48) and "il" (290, -31); "il" wins,
//     then " L" (-48) beats "ily" (310, -51), then "ily", then " L"+"ily" =
//     " Lily" (317, -58): [317];
//   - all of them with Google's SentencePiece itself (Debian's
//     python3-sentencepiece 0.1.97) encoding with a tokenizer.model rebuilt
//     from tok512.bin (pieces and scores as stored, "▁" for spaces, <unk>
//     unknown, <s> and </s> control, ids 3-258 byte pieces; BPE, byte
//     fallback, identity normalization, dummy prefix on, extra whitespace
//     kept: llama2.c's train_vocab settings). SentencePiece's BPE is a
//     different implementation from run.c's (it splits at whitespace first
//     and merges with a priority queue), so agreement checks the algorithm,
//     not a copy of it.
var tok512Cases = []struct {
	text string
	want []int
}{
	{"Lily", []int{317}},
	{"Once upon a time", []int{403, 407, 261, 378}},
	{"hello world", []int{281, 306, 414, 263, 304, 341}},
	{"Lily's favorite toy was a kite.", []int{317, 439, 419, 272, 412, 435, 304, 275, 411, 267, 422, 286, 261, 409, 275, 411, 426}},
	{"Hello, world! 123", []int{346, 306, 414, 432, 263, 304, 341, 443, 410, 475, 479, 472}},
	{"a  b", []int{261, 410, 268}},
	{" x", []int{410, 410, 444}},
	{"zzz", []int{410, 451, 451, 451}},
	// é and … are pieces; ü (C3 BC) and 日 (E6 97 A5) fall back to bytes + 3.
	{"é…ü日", []int{410, 485, 486, 0xC3 + 3, 0xBC + 3, 0xE6 + 3, 0x97 + 3, 0xA5 + 3}},
	{"The cat sat on the mat.\nTim was happy.", []int{291, 280, 294, 262, 294, 353, 265, 284, 294, 426, 0x0A + 3, 434, 288, 286, 393, 426}},
	{"", nil},
}

func TestLlama2CEncodeTok512(t *testing.T) {
	tok := loadTok512(t)
	if tok.VocabSize() != 512 || tok.MaxTokenLength() != 7 || tok.BOS() != 1 || tok.EOS() != 2 {
		t.Fatalf("vocab %d, max length %d, BOS %d, EOS %d; want 512, 7, 1, 2", tok.VocabSize(), tok.MaxTokenLength(), tok.BOS(), tok.EOS())
	}
	for _, c := range tok512Cases {
		if got := tok.Encode(c.text, false, false); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		want := append(append([]int{1}, c.want...), 2)
		if got := tok.Encode(c.text, true, true); !slices.Equal(got, want) {
			t.Errorf("Encode(%q, bos, eos) = %v, want %v", c.text, got, want)
		}
		if got := tok.Decode(c.want); got != c.text {
			t.Errorf("Decode(%v) = %q, want %q", c.want, got, c.text)
		}
	}
}

func TestLlama2CRoundTripTok512(t *testing.T) {
	tok := loadTok512(t)
	for _, s := range []string{
		"Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
		`Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do.`,
		"  leading and trailing spaces  ",
		"Tabs\tand\nnewlines\r\n~!@#$%^&*()_+{}|:<>?`-=[]\\;',./",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
		"x",
	} {
		for _, bos := range []bool{false, true} {
			ids := tok.Encode(s, bos, bos)
			if got := tok.Decode(ids); got != s {
				t.Errorf("Decode(Encode(%q, %v)) = %q", s, bos, got)
			}
		}
	}
	// Every printable ASCII character alone.
	for c := byte(' '); c <= '~'; c++ {
		s := string(c)
		if got := tok.Decode(tok.Encode(s, true, false)); got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	}
}

func TestLlama2CDecodeToken(t *testing.T) {
	tok := loadTok512(t)
	cases := []struct {
		prev, id int
		want     string
	}{
		{1, 317, "Lily"},    // " Lily" after BOS loses its space
		{317, 317, " Lily"}, // elsewhere it keeps it
		{1, 410, ""},        // " " after BOS
		{5, 13, "\n"},       // <0x0A>
		{5, 0xC3 + 3, "\xC3"},
		{5, 0, "<unk>"},
		{5, 512, ""},
		{5, -1, ""},
		{5, 1, "\n<s>\n"}, // run.c's stored BOS text
	}
	for _, c := range cases {
		if got := tok.DecodeToken(c.prev, c.id); got != c.want {
			t.Errorf("DecodeToken(%d, %d) = %q, want %q", c.prev, c.id, got, c.want)
		}
	}
	// Byte tokens joined back into UTF-8; BOS and EOS give no text.
	if got := tok.Decode([]int{1, 410, 0xC3 + 3, 0xBC + 3, 2}); got != "ü" {
		t.Errorf("Decode of byte tokens = %q, want ü", got)
	}
}

// tokFile writes a llama2.c tokenizer file.
func tokFile(maxLen int32, pieces []string, scores []float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, maxLen)
	for i, p := range pieces {
		binary.Write(&b, binary.LittleEndian, scores[i])
		binary.Write(&b, binary.LittleEndian, int32(len(p)))
		b.WriteString(p)
	}
	return b.Bytes()
}

// smallVocab is a synthetic llama2.c vocabulary: <unk>, <s>, </s>, the 256
// byte tokens, then pieces with chosen scores.
func smallVocab(extra map[string]float32, order []string) ([]string, []float32) {
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, "<0x"+strings.ToUpper(hex2(byte(b)))+">")
		scores = append(scores, 0)
	}
	for _, p := range order {
		pieces = append(pieces, p)
		scores = append(scores, extra[p])
	}
	return pieces, scores
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func TestLlama2CMergeRules(t *testing.T) {
	// ids: " "=259 a=260 b=261 "ab"=262 "ba"=263 " a"=264 "aa"=265 "€"=266
	order := []string{" ", "a", "b", "ab", "ba", " a", "aa", "€"}
	scores := map[string]float32{" ": -1, "a": -2, "b": -3, "ab": 5, "ba": 5, " a": 1, "aa": 5, "€": -4}
	pieces, sc := smallVocab(scores, order)
	tok, err := ReadLlama2C(bytes.NewReader(tokFile(8, pieces, sc)))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		text string
		want []int
	}{
		// " bab": pairs " b"(none) "ba"(5) "ab"(5): equal scores, leftmost wins.
		{"tie goes left", "bab", []int{259, 263, 261}},
		// " aaa": " a"(1) "aa"(5) "aa"(5) -> leftmost aa, then " a"? no:
		// [" ", "aa", "a"]: " aa" absent, "aaa" absent -> stays.
		{"repeated pair", "aaa", []int{259, 265, 260}},
		{"code point piece", "€", []int{259, 266}},
		{"byte fallback", "é", []int{259, 0xC3 + 3, 0xA9 + 3}},
		// A stray continuation byte and an over-long sequence (five
		// continuation bytes after a lead byte: four bytes, then one alone).
		{"stray continuation", "\x80", []int{259, 0x80 + 3}},
		{"overlong", "\xF0\x80\x80\x80\x80", []int{259, 0xF0 + 3, 0x80 + 3, 0x80 + 3, 0x80 + 3, 0x80 + 3}},
		{"NUL is a byte", "\x00", []int{259, 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tok.Encode(c.text, false, false); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
			}
		})
	}

	// Without byte tokens, fallback gives <unk>; without " ", the dummy
	// prefix is the space's byte token (here: unk, as there are none).
	tok2, err := ReadLlama2C(bytes.NewReader(tokFile(6, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a"}, []float32{0, 0, 0, -1})))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok2.Encode("ab", false, false); !slices.Equal(got, []int{0, 3, 0}) {
		t.Errorf("no byte tokens: Encode(\"ab\") = %v, want [0 3 0]", got)
	}
}

func TestReadLlama2CErrors(t *testing.T) {
	good := tokFile(6, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a"}, []float32{0, 0, 0, -1})
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"negative max length", tokFile(-1, nil, nil), "max_token_length -1"},
		{"truncated record", good[:len(good)-6], "token 3: truncated score/length"},
		{"truncated text", good[:len(good)-1], "token 3: truncated text"},
		{"token longer than max", tokFile(2, []string{"<unk>"}, []float32{0}), "token 0: length 5 is outside [0, max_token_length 2]"},
		{"too few tokens", tokFile(5, []string{"<unk>"}, []float32{0}), "only 1 tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadLlama2C(bytes.NewReader(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := ReadLlama2C(bytes.NewReader(good)); err != nil {
		t.Errorf("good file: %v", err)
	}
}
