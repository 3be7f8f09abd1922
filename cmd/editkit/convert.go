package main

import (
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/models/llama"
)

// convertCmd groups the converters from other checkpoint formats.
func (a *app) convertCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "convert",
		Short: "Convert checkpoints of other formats into Hugging Face folders",
		Long: `convert turns a checkpoint written by another tool into a Hugging Face
folder (config.json, model.safetensors, tokenizer files) that every other
editkit command reads.`,
	}
	c.AddCommand(a.convertLlama2CCmd())
	return c
}

func (a *app) convertLlama2CCmd() *cobra.Command {
	var o outFlags
	var tok string
	c := &cobra.Command{
		Use:   "llama2c MODEL.bin --tokenizer TOK.bin -o DIR",
		Short: "Convert a llama2.c checkpoint into a Hugging Face LLaMA folder",
		Long: `llama2c converts a checkpoint of Karpathy's llama2.c (run.c's format: a header
of seven int32 — dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
(negative for an unshared classifier), seq_len — then the float32 weights) into
a Hugging Face LlamaForCausalLM folder: config.json, model.safetensors and the
tokenizer.bin. The query and key projections are permuted from llama2.c's
interleaved rotary layout to Hugging Face's half-split one, as transformers'
convert_llama_weights_to_hf.py does. The file's size must match its header
exactly. Checkpoints of export.py --version 1 or 2 are refused: re-export
them with --version 0.`,
		Args: exactArgs(1, "one llama2.c checkpoint (MODEL.bin)"),
		RunE: func(_ *cobra.Command, args []string) error {
			start := time.Now()
			if tok == "" {
				return errors.New("no tokenizer given: pass --tokenizer TOK.bin, the llama2.c tokenizer the model was trained with (e.g. tok512.bin for stories260K, tokenizer.bin for stories15M)")
			}
			wo, err := o.options()
			if err != nil {
				return err
			}
			if strings.HasSuffix(o.out, ".safetensors") {
				return errors.New("convert writes a folder (config.json, model.safetensors, tokenizer.bin): give -o a folder path, not a .safetensors file")
			}
			p := a.newProgress("converting")
			res, err := llama.ConvertLlama2C(args[0], o.out, llama.Llama2CConvertOptions{
				Tokenizer: tok, DType: wo.DType, ShardSize: wo.ShardSize, Force: wo.Force,
				AllowNonfinite: a.allowNonfinite, Saturate: wo.Saturate, Saturated: wo.Saturated, Progress: p.callback(),
			})
			p.done()
			if err != nil {
				return err
			}
			return a.finish(writeSummary{
				Command: "convert llama2c", Output: o.out, InputBytes: res.InputBytes, Saturated: o.saturatedCount(),
				Params: map[string]any{"config": res.Config, "tensors": res.Tensors, "parameters": res.Parameters, "tokenizer": tok},
			}, start)
		},
	}
	c.Flags().StringVar(&tok, "tokenizer", "", "the model's llama2.c tokenizer.bin, copied into the output (required)")
	o.register(c.Flags(), "dtype of the output's tensors (default float32)")
	markPaths(c.Flags(), pathInput, "tokenizer")
	a.addNonfinite(c)
	return argsAreInputs(c)
}
