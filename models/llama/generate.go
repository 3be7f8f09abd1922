package llama

import (
	"fmt"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Generator runs the model one step at a time with a key/value cache of a
// fixed length: a step feeds tokens at the next positions (the whole prompt
// at once, then one token at a time) and returns the logits of the last
// one. One graph is compiled per number of tokens fed (in practice two:
// the prompt's length and 1) and serves every position: the position is a
// graph input, and the cache is written with DynamicUpdateSlice where the
// backend has it (XLA), else with a scatter-add of the new rows (simplego;
// the positions not yet written hold zeros). The adapter, if the model has one, runs at every step; it
// gets no extra inputs.
type Generator struct {
	m      *Model
	maxLen int
	dus    bool
}

// useDUS lets generation use DynamicUpdateSlice where the backend has it
// (the tests turn it off to measure the scatter-add path on XLA).
var useDUS = true

// NewGenerator prepares generation of up to maxLen positions (prompt
// included); maxLen ≤ max_position_embeddings.
func (m *Model) NewGenerator(maxLen int) (*Generator, error) {
	if maxLen <= 0 || maxLen > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("generation length %d: it must be in 1..%d (max_position_embeddings)", maxLen, m.Config.MaxPositionEmbeddings)
	}
	dus := useDUS && models.Backend().Capabilities().Operations[backends.OpTypeDynamicUpdateSlice]
	return &Generator{m: m, maxLen: maxLen, dus: dus}, nil
}

// MaxLen is the cache's length.
func (g *Generator) MaxLen() int { return g.maxLen }

// stepFunc is (weights, ids [batch, n], pos int32 scalar, k₀, v₀, k₁, …) →
// (logits of the last token [batch, vocab], k₀', v₀', …).
func (g *Generator) stepFunc() (*models.Func, error) {
	c, a, dus := g.m.Config, g.m.Adapter, g.dus
	key := fmt.Sprintf("step/maxLen=%d/dus=%v", g.maxLen, dus)
	return g.m.fn(key, func(p models.Params, in []*graph.Node) []*graph.Node {
		ids, start := in[0], in[1]
		L := c.NumHiddenLayers
		if len(in) != 2+2*L {
			panic(fmt.Errorf("llama: generation step: %d inputs, want %d", len(in), 2+2*L))
		}
		cache := &kvCache{pos: start, maxLen: g.maxLen, dus: dus}
		for i := range L {
			cache.k = append(cache.k, in[2+2*i])
			cache.v = append(cache.v, in[3+2*i])
		}
		n := ids.Shape().Dimensions[1]
		pos := graph.Add(graph.Iota(ids.Graph(), shapes.Make(dtypes.Int32, n), 0), start)
		x, _, next := decoder(c, p, ids, pos, cache, Options{Adapter: a})
		logits := head(c, p, models.Token(x, n-1), fewRowsLinear)
		outs := []*graph.Node{logits}
		for i := range L {
			outs = append(outs, next.k[i], next.v[i])
		}
		return outs
	})
}

// Session is one generation in progress: its cache and position.
type Session struct {
	g      *Generator
	fn     *models.Func
	batch  int
	pos    int
	caches []*tensors.Tensor
}

// NewSession starts a generation of batch sequences at position 0.
func (g *Generator) NewSession(batch int) (*Session, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("generation batch %d must be positive", batch)
	}
	fn, err := g.stepFunc()
	if err != nil {
		return nil, err
	}
	c := g.m.Config
	s := &Session{g: g, fn: fn, batch: batch}
	for range c.NumHiddenLayers {
		s.caches = append(s.caches,
			tensors.FromShape(shapes.Make(dtypes.Float32, batch, c.NumKeyValueHeads, g.maxLen, c.HeadDim)), // keys
			tensors.FromShape(shapes.Make(dtypes.Float32, batch, c.NumKeyValueHeads, c.HeadDim, g.maxLen)), // values
		)
	}
	return s, nil
}

// Pos is the number of positions fed so far.
func (s *Session) Pos() int { return s.pos }

// Feed runs ids [batch, n] (an integer tensor) at the next n positions and
// returns the logits of the last one, [batch, vocab].
func (s *Session) Feed(ids *tensors.Tensor) (*tensors.Tensor, error) {
	d := ids.Shape().Dimensions
	if len(d) != 2 || d[0] != s.batch || d[1] == 0 {
		return nil, fmt.Errorf("generation: ids %s, want [%d, n ≥ 1]", ids.Shape(), s.batch)
	}
	if s.pos+d[1] > s.g.maxLen {
		return nil, fmt.Errorf("generation: %d more tokens at position %d pass the cache length %d", d[1], s.pos, s.g.maxLen)
	}
	args := []any{ids, tensors.FromScalar(int32(s.pos))}
	for _, t := range s.caches {
		args = append(args, donate(t))
	}
	outs, err := s.fn.Call(s.g.m.Weights, args...)
	if err != nil {
		return nil, fmt.Errorf("generation step at position %d: %w", s.pos, err)
	}
	s.caches = outs[1:]
	s.pos += d[1]
	return outs[0], nil
}

// donate hands a cache tensor's device buffer to the step that replaces it,
// where the backend allows (XLA on an accelerator); simplego's buffers are
// shared with the host and are passed as they are.
func donate(t *tensors.Tensor) (arg any) {
	if t.IsShared() {
		return t
	}
	defer func() {
		if recover() != nil {
			arg = t
		}
	}()
	d, err := graph.DonateTensorBuffer(t, models.Backend(), 0)
	if err != nil {
		return t
	}
	return d
}

// Step feeds tokens of a batch-1 session and returns the logits of the last.
func (s *Session) Step(tokens ...int) ([]float32, error) {
	if s.batch != 1 {
		return nil, fmt.Errorf("generation: Step is for batch 1, the session has %d", s.batch)
	}
	ids, err := IDs(tokens)
	if err != nil {
		return nil, err
	}
	logits, err := s.Feed(ids)
	if err != nil {
		return nil, err
	}
	return tensors.MustCopyFlatData[float32](logits), nil
}

// GenerateOptions configure Model.Generate.
type GenerateOptions struct {
	// Steps is the number of positions, BOS and prompt included, as run.c's
	// -n; 0 or more than max_position_embeddings means
	// max_position_embeddings.
	Steps int
	// Sampler picks each token; nil means greedy.
	Sampler *Sampler
	// Stop ends the generation before a token it returns true for; nil
	// stops at the config's BOS (as run.c) and EOS tokens.
	Stop func(id int) bool
	// Emit, when set, is called with each token that follows another, the
	// forced prompt tokens first, as run.c prints them (decode(prev, next)).
	Emit func(prev, next int)
}

// GenerateStats reports a generation's size and speed.
type GenerateStats struct {
	PromptTokens int // prompt tokens, BOS included
	Generated    int // sampled tokens
	Prefill      time.Duration
	Decode       time.Duration // all one-token steps
	// TokensPerSecond is the rate of the one-token steps after the first
	// (which compiles its graph): (steps − 1)/time, as run.c starts its
	// timer after its first iteration. 0 with fewer than two steps.
	TokensPerSecond float64
}

// Generate continues prompt (token ids, BOS first where the tokenizer has
// one) as llama2.c's run.c generate does: positions 0..Steps-1, the prompt
// tokens forced, the others sampled, stopping early at a Stop token. It
// returns the tokens, prompt included. The prompt is fed in one step
// (prefill), then one token per step.
func (m *Model) Generate(prompt []int, o GenerateOptions) ([]int, GenerateStats, error) {
	var st GenerateStats
	if len(prompt) == 0 {
		return nil, st, fmt.Errorf("generation needs at least one prompt token")
	}
	steps := o.Steps
	if steps <= 0 || steps > m.Config.MaxPositionEmbeddings {
		steps = m.Config.MaxPositionEmbeddings
	}
	stop := o.Stop
	if stop == nil {
		bos := m.Config.BOSTokenID
		stop = func(id int) bool { return id == bos || m.Config.IsEOS(id) }
	}
	sampler := o.Sampler
	if sampler == nil {
		sampler = NewSampler(0, 0, 0)
	}
	emit := o.Emit
	if emit == nil {
		emit = func(int, int) {}
	}
	st.PromptTokens = len(prompt)
	out := append([]int(nil), prompt[:1]...)
	// The forced prompt tokens, as run.c prints them.
	for i := 1; i < len(prompt) && i <= steps; i++ {
		if stop(prompt[i]) {
			return out, st, nil
		}
		emit(prompt[i-1], prompt[i])
		out = append(out, prompt[i])
	}
	if steps < len(prompt) {
		return out, st, nil
	}
	g, err := m.NewGenerator(steps)
	if err != nil {
		return nil, st, err
	}
	s, err := g.NewSession(1)
	if err != nil {
		return nil, st, err
	}
	t0 := time.Now()
	logits, err := s.Step(prompt...)
	if err != nil {
		return nil, st, err
	}
	st.Prefill = time.Since(t0)
	token := prompt[len(prompt)-1]
	var firstStep time.Time
	decodeSteps := 0
	for pos := len(prompt) - 1; pos < steps; pos++ {
		next := sampler.Sample(logits)
		if stop(next) {
			break
		}
		emit(token, next)
		out = append(out, next)
		st.Generated++
		token = next
		if pos+1 >= steps {
			break
		}
		t := time.Now()
		if logits, err = s.Step(next); err != nil {
			return nil, st, err
		}
		st.Decode += time.Since(t)
		decodeSteps++
		if decodeSteps == 1 {
			firstStep = time.Now()
		}
	}
	if decodeSteps > 1 {
		st.TokensPerSecond = float64(decodeSteps-1) / time.Since(firstStep).Seconds()
	}
	return out, st, nil
}

// SafePiece is what llama2.c's safe_printf prints of a decoded piece: a
// piece of one byte that is a control character (neither printable nor
// whitespace) gives nothing. Unlike run.c, which drops every lone byte
// outside ASCII, bytes from 0x80 up are kept: they are parts of UTF-8
// characters that byte-fallback tokens spell out one byte at a time.
func SafePiece(piece string) string {
	if len(piece) == 1 {
		b := piece[0]
		printable := b >= 0x20 && b < 0x7f
		space := b == ' ' || (b >= '\t' && b <= '\r')
		if !printable && !space && b < 0x80 {
			return ""
		}
	}
	return piece
}
