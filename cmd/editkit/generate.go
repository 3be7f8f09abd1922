package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/editkit/editkit/models/tokenizers"
)

// generateResult is the --json result of generate.
type generateResult struct {
	Command         string  `json:"command"`
	Model           string  `json:"model"`
	Backend         string  `json:"backend"`
	Text            string  `json:"text"`
	Tokens          []int   `json:"tokens"`
	PromptTokens    int     `json:"prompt_tokens"`
	Generated       int     `json:"generated"`
	Temperature     float32 `json:"temperature"`
	TopP            float32 `json:"top_p"`
	Seed            uint64  `json:"seed"`
	Steps           int     `json:"steps"`
	PrefillSeconds  float64 `json:"prefill_seconds"`
	DecodeSeconds   float64 `json:"decode_seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

func (a *app) generateCmd() *cobra.Command {
	var (
		model, prompt, tokPath string
		memory                 string
		temperature, topP      float32
		seed                   uint64
		steps                  int
	)
	c := &cobra.Command{
		Use:   "generate --model DIR [--prompt TEXT]",
		Short: "Generate text with a LLaMA-family language model",
		Long: `generate continues a prompt with a LLaMA-family causal language model (a
Hugging Face LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM folder:
config.json, safetensors weights and a tokenizer; or a llama2.c model converted
with 'editkit convert llama2c'), and prints the text, the prompt included, as
llama2.c's run does. Sampling is run.c's: greedy at --temperature 0, otherwise
temperature and top-p (nucleus) sampling with run.c's random generator, so the
same seed gives the same text as run.c. --steps counts positions, the BOS token
and the prompt included (run.c's -n); generation stops early at a BOS or EOS
token. The generation speed (tokens per second, after the first step) goes to
stderr.`,
		Args: exactArgs(0, "no arguments (give the model with --model)"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if model == "" {
				return errors.New("no model given: pass --model DIR (a Hugging Face LLaMA-family folder, e.g. one written by 'editkit convert llama2c')")
			}
			if steps < 0 {
				return fmt.Errorf("--steps %d: it must be positive (0 means the model's max_position_embeddings)", steps)
			}
			m, err := llama.Load(model)
			if err != nil {
				return err
			}
			if tokPath == "" {
				tokPath = model
			}
			tok, err := tokenizers.Load(tokPath)
			if err != nil {
				return err
			}
			if tok.VocabSize() > m.Config.VocabSize {
				return fmt.Errorf("tokenizer %s has %d tokens, more than the model's vocabulary of %d: give the model's own tokenizer", tokPath, tok.VocabSize(), m.Config.VocabSize)
			}
			ids := tok.Encode(prompt, true, false)
			if len(ids) == 0 {
				return errors.New("the tokenizer has no BOS token, so generation needs a prompt: pass --prompt TEXT")
			}
			if memory != "" { // an edit memory (editkit memoir edit), routed on the prompt
				if m, err = a.applyMemory(m, tok, memory, ids); err != nil {
					return err
				}
			}
			if seed == 0 { // run.c: seed with the time
				seed = uint64(uint32(time.Now().Unix()))
				if !a.quiet && !a.json && temperature > 0 {
					fmt.Fprintf(a.stderr, "editkit: generate: seed %d\n", seed)
				}
			}
			asked := steps
			if steps == 0 || steps > m.Config.MaxPositionEmbeddings {
				steps = m.Config.MaxPositionEmbeddings
			}
			if len(ids) > steps {
				fmt.Fprintf(a.stderr, "editkit: generate: warning: the prompt is %d tokens (BOS included) but only %d positions run (--steps %d; the model's max_position_embeddings is %d): the prompt is cut and nothing is generated; raise --steps above %d\n",
					len(ids), steps, asked, m.Config.MaxPositionEmbeddings, len(ids))
			}
			stop := func(id int) bool {
				return id == m.Config.BOSTokenID || m.Config.IsEOS(id) || (id >= 0 && (id == tok.BOS() || id == tok.EOS()))
			}
			var text strings.Builder
			emit := func(prev, next int) {
				piece := llama.SafePiece(tok.DecodeToken(prev, next))
				text.WriteString(piece)
				if !a.json {
					fmt.Fprint(a.stdout, piece)
				}
			}
			out, st, err := m.Generate(ids, llama.GenerateOptions{
				Steps: steps, Sampler: llama.NewSampler(temperature, topP, seed), Stop: stop, Emit: emit,
			})
			if err != nil {
				if !a.json && text.Len() > 0 {
					fmt.Fprintln(a.stdout)
				}
				return err
			}
			if a.json {
				return a.printJSON(generateResult{
					Command: "generate", Model: model, Backend: models.Backend().Description(), Text: text.String(),
					Tokens: out, PromptTokens: st.PromptTokens, Generated: st.Generated,
					Temperature: temperature, TopP: topP, Seed: seed, Steps: steps,
					PrefillSeconds: st.Prefill.Seconds(), DecodeSeconds: st.Decode.Seconds(), TokensPerSecond: st.TokensPerSecond,
				})
			}
			fmt.Fprintln(a.stdout)
			if !a.quiet && st.TokensPerSecond > 0 {
				fmt.Fprintf(a.stderr, "achieved tok/s: %f (%d tokens generated, prefill of %d in %v, %s)\n",
					st.TokensPerSecond, st.Generated, st.PromptTokens, st.Prefill.Round(time.Microsecond), models.Backend().Description())
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "the model: a Hugging Face LLaMA-family folder (required)")
	f.StringVar(&prompt, "prompt", "", "the text to continue (default: none, generation starts from BOS)")
	f.StringVar(&tokPath, "tokenizer", "", "the tokenizer: a folder or file (default: the model folder's tokenizer.model, tokenizer.json or tokenizer.bin)")
	f.StringVar(&memory, "memory", "", "an edit memory written by 'editkit memoir edit' (MEMOIR or FT-L) to generate with")
	f.Float32Var(&temperature, "temperature", 1.0, "sampling temperature; 0 is greedy decoding")
	f.Float32Var(&topP, "top-p", 0.9, "top-p (nucleus) sampling threshold; 0 or 1 samples from the whole distribution")
	f.Uint64Var(&seed, "seed", 0, "seed of the random generator (default: the time, as run.c)")
	f.IntVar(&steps, "steps", 256, "positions to run, BOS and prompt included; 0 means the model's max_position_embeddings")
	markPaths(f, pathInput, "model", "tokenizer", "memory")
	markRange(f, "temperature", "[0, inf)")
	markRange(f, "top-p", "[0, 1]")
	return c
}
