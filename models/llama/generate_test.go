package llama

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/models/tokenizers"
)

var noDUS = flag.Bool("llama.scatter", false, "write the KV cache with the scatter-add even where the backend has DynamicUpdateSlice")

func TestMain(m *testing.M) {
	flag.Parse()
	if *noDUS {
		useDUS = false
	}
	os.Exit(m.Run())
}

// convertedStories converts stories260K (with tok512) into a Hugging Face
// folder and loads the model and its tokenizer. It skips the test when the
// files are absent.
func convertedStories(tb testing.TB) (*Model, tokenizers.Tokenizer) {
	tb.Helper()
	dir := os.Getenv(envLLMData)
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "llm")
	}
	bin, tok := filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "tok512.bin")
	for _, p := range []string{bin, tok} {
		if _, err := os.Stat(p); err != nil {
			tb.Skipf("skipping: %s is absent (the llama2.c stories260K model and tok512 tokenizer live in ../shared/data/llm beside the repository, or set %s to a folder holding them)", p, envLLMData)
		}
	}
	out := filepath.Join(tb.TempDir(), "stories260K")
	if _, err := ConvertLlama2C(bin, out, Llama2CConvertOptions{Tokenizer: tok}); err != nil {
		tb.Fatal(err)
	}
	m, err := Load(out)
	if err != nil {
		tb.Fatal(err)
	}
	tk, err := tokenizers.Load(out)
	if err != nil {
		tb.Fatal(err)
	}
	return m, tk
}

// runText generates as llama2.c's run does and returns the printed text
// (without run.c's final newline).
func runText(t *testing.T, m *Model, tk tokenizers.Tokenizer, prompt string, steps int, s *Sampler) (string, GenerateStats) {
	t.Helper()
	var sb strings.Builder
	ids := tk.Encode(prompt, true, false)
	_, st, err := m.Generate(ids, GenerateOptions{Steps: steps, Sampler: s, Emit: func(prev, next int) {
		sb.WriteString(SafePiece(tk.DecodeToken(prev, next)))
	}})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String(), st
}

func firstDiff(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestStories260KGreedy is the acceptance test of the model, its KV-cache
// generation and the conversion together: greedy decoding of 200 positions
// from BOS gives llama2c's test_all.py text (llama2cExpected, defined in
// convert_forward_test.go: the expected_stdout literal of llama2.c's
// test_all.py) byte for byte.
func TestStories260KGreedy(t *testing.T) {
	m, tk := convertedStories(t)
	got, st := runText(t, m, tk, "", 200, NewSampler(0, 0.9, 0))
	if got != llama2cExpected {
		n := firstDiff(got, llama2cExpected)
		t.Fatalf("greedy text differs from llama2.c's from byte %d:\ngot  %q\nwant %q", n, got, llama2cExpected)
	}
	t.Logf("stories260K greedy: %d tokens, prefill %v, decode %v, %.0f tok/s", st.Generated, st.Prefill, st.Decode, st.TokensPerSecond)
}

// TestStories260KSampling compares sampled text with run.c's. The expected
// strings are the stdout of llama2.c's run.c (commit 350e04f, built with
// gcc -O2) on stories260K.bin with -z tok512.bin and the flags given,
// without its final newline. Sampling depends on the logits to float
// rounding only where a coin falls within rounding of a cumulative
// probability, which these runs do not hit.
func TestStories260KSampling(t *testing.T) {
	m, tk := convertedStories(t)
	for _, tc := range []struct {
		flags       string
		temperature float32
		topP        float32
		seed        uint64
		steps       int
		prompt      string
		want        string
	}{
		{"-t 0.8 -p 0.9 -s 42 -n 256", 0.8, 0.9, 42, 256, "",
			"Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, Lily's mom told her to teach him to cut one toys and bring it to the sunflower. Lily was scared and scared.\nLily wanted to make a popcorn spoiled a big, red treasure. She was sad because she had started to draw and it was dead. But her mom said, \"I don't want to play, but I don't want to share it.\"\nLily said, \"Okay, I will go home. We can take a different special popcorn for me.\"\nThey went back to the garden and saw a big, red cap. Lily wanted to"},
		{"-t 1.0 -p 0 -s 7 -n 100", 1.0, 0, 7, 100, "",
			"Once upon a time, there was a little girl named Lily. She loved to play with her toys all day long. One sunny day, she went to the park to play with her friend, Timmy. She went to the park and saw a big sign at the sky.\n\"What are you doing?\" she asked.\nTimmy said,"},
		{"-t 0.9 -p 0.95 -s 1234 -n 120 -i 'Once upon a time, a cat'", 0.9, 0.95, 1234, 120, "Once upon a time, a cat",
			"Once upon a time, a cat and a dog became friends. They liked to eat many colors and learn new things. One day, they went to the park to play with their toys. The park was big and cozy. They played with ball and eated.\nAfter a while, the ball went by, they saw a big ball. The ball was so sad"},
	} {
		got, _ := runText(t, m, tk, tc.prompt, tc.steps, NewSampler(tc.temperature, tc.topP, tc.seed))
		if got != tc.want {
			n := firstDiff(got, tc.want)
			t.Errorf("run %s: text differs from run.c's from byte %d:\ngot  %q\nwant %q", tc.flags, n, got, tc.want)
		}
	}
}

// TestGenerateSteps checks run.c's step counting: -n counts positions, BOS
// and prompt included, and a prompt longer than the steps is cut.
func TestGenerateSteps(t *testing.T) {
	m, tk := convertedStories(t)
	prompt := tk.Encode("Once upon a time", true, false)
	for _, steps := range []int{1, 3, len(prompt), len(prompt) + 1, len(prompt) + 7} {
		emitted := 0
		out, st, err := m.Generate(prompt, GenerateOptions{Steps: steps, Emit: func(int, int) { emitted++ }})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != steps+1 || emitted != steps {
			t.Errorf("steps %d: %d tokens out, %d emitted; want %d and %d", steps, len(out), emitted, steps+1, steps)
		}
		if want := max(0, steps-len(prompt)+1); st.Generated != want {
			t.Errorf("steps %d: %d generated, want %d", steps, st.Generated, want)
		}
	}
	// Stop: a stop token ends the generation before it is emitted.
	out, _, err := m.Generate([]int{1}, GenerateOptions{Steps: 50, Stop: func(id int) bool { return id == llama2cExpectedSecond(tk) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Errorf("stop after the first generated token: got %d tokens", len(out))
	}
}

// llama2cExpectedSecond is the second greedy token from BOS ("upon" after
// "Once").
func llama2cExpectedSecond(tk tokenizers.Tokenizer) int {
	ids := tk.Encode("Once upon", false, false)
	return ids[len(ids)-1]
}

// TestSamplerRNG checks run.c's xorshift generator against values printed
// by run.c's own random_u32 and random_f32 (compiled with gcc).
func TestSamplerRNG(t *testing.T) {
	s := NewSampler(1, 0.9, 42)
	for i, want := range []uint32{1456360119, 3359763283, 3393612768, 4054632243} {
		if got := s.RandomU32(); got != want {
			t.Errorf("random_u32 #%d with seed 42: %d, want %d", i, got, want)
		}
	}
	s = NewSampler(1, 0.9, 1)
	for i, want := range []float32{0.280835032, 0.671137214, 0.725846112} {
		if got := s.RandomF32(); got != want {
			t.Errorf("random_f32 #%d with seed 1: %.9g, want %.9g", i, got, want)
		}
	}
}

func TestSampler(t *testing.T) {
	// Greedy: the first largest.
	if got := NewSampler(0, 0.9, 1).Sample([]float32{1, 3, 3, 2}); got != 1 {
		t.Errorf("greedy picked %d", got)
	}
	// Top-p with a dominant token: the nucleus is that token alone.
	for seed := uint64(1); seed < 50; seed++ {
		if got := NewSampler(1, 0.5, seed).Sample([]float32{0, 10, 0, 0}); got != 1 {
			t.Fatalf("seed %d: top-p 0.5 picked %d outside the nucleus", seed, got)
		}
	}
	// Plain sampling reaches every token of a uniform distribution.
	seen := map[int]bool{}
	s := NewSampler(1, 0, 3)
	for range 200 {
		seen[s.Sample([]float32{0, 0, 0, 0})] = true
	}
	if len(seen) != 4 {
		t.Errorf("uniform sampling reached %d of 4 tokens", len(seen))
	}
	if got := NewSampler(1, 0.9, 1).Sample([]float32{5}); got != 0 {
		t.Errorf("one token: picked %d", got)
	}
}

func TestSafePiece(t *testing.T) {
	for in, want := range map[string]string{"a": "a", "\n": "\n", "\x01": "", "\x7f": "", "\xe2": "\xe2", " the": " the", "": ""} {
		if got := SafePiece(in); got != want {
			t.Errorf("SafePiece(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkGenerateStories260K measures generation speed on the
// stories260K model: 256 positions from BOS, greedy. It reports the decode
// rate (tok/s, one-token steps after the first) and the whole run's.
func BenchmarkGenerateStories260K(b *testing.B) {
	m, _ := convertedStories(b)
	var rate, total float64
	for i := 0; i < b.N; i++ {
		out, st, err := m.Generate([]int{1}, GenerateOptions{Steps: 256, Stop: func(int) bool { return false }})
		if err != nil {
			b.Fatal(err)
		}
		rate += st.TokensPerSecond
		total += float64(len(out)-1) / (st.Prefill + st.Decode).Seconds()
	}
	b.ReportMetric(rate/float64(b.N), "tok/s")
	b.ReportMetric(total/float64(b.N), "tok/s-incl-compile")
}

// BenchmarkGenerateRandom15M measures generation speed on a random model of
// stories15M's shape (dim 288, 6 layers, 6 heads, hidden 768, vocabulary
// 32000): 256 positions from BOS, greedy, no stopping.
func BenchmarkGenerateRandom15M(b *testing.B) {
	c, err := ParseConfig([]byte(`{"hidden_size":288,"intermediate_size":768,"num_hidden_layers":6,"num_attention_heads":6,"num_key_value_heads":6,"vocab_size":32000,"max_position_embeddings":256,"rms_norm_eps":1e-5}`))
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewRandom(c, 1)
	if err != nil {
		b.Fatal(err)
	}
	var rate float64
	for i := 0; i < b.N; i++ {
		_, st, err := m.Generate([]int{1}, GenerateOptions{Steps: 256, Stop: func(int) bool { return false }})
		if err != nil {
			b.Fatal(err)
		}
		rate += st.TokensPerSecond
	}
	b.ReportMetric(rate/float64(b.N), "tok/s")
}
