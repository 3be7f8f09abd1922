package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

const taskVectorDType = "dtype of the task vector's tensors (default float32)"

func (a *app) taskVectorCmd() *cobra.Command {
	var o outFlags
	var base, ft string
	c := &cobra.Command{
		Use:   "taskvector --base BASE --finetuned FINETUNED -o TV",
		Short: "Build the task vector τ = θ_finetuned − θ_base",
		Long: `taskvector subtracts the base from a fine-tuned checkpoint, tensor by tensor,
over the float tensors (integer and bool tensors are not part of a task
vector; they pass through from the base when the vector is applied). The
result is a checkpoint marked as a task vector, recording its base.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if ft == "" {
				return errors.New("no fine-tuned checkpoint given: pass --finetuned CHECKPOINT")
			}
			wo, err := o.options()
			if err != nil {
				return err
			}
			return a.writeSet("taskvector", base, []string{ft}, o, wo, nil, "building task vector", func(s *tasks.Set, wo tasks.WriteOptions, so tasks.StreamOptions) error {
				return tasks.Build(s, o.out, wo, so)
			})
		},
	}
	c.Flags().StringVar(&base, "base", "", "pre-trained checkpoint (required)")
	c.Flags().StringVar(&ft, "finetuned", "", "fine-tuned checkpoint (required)")
	markPaths(c.Flags(), pathInput, "base", "finetuned")
	o.register(c.Flags(), taskVectorDType)
	a.addNonfinite(c)
	return c
}

func (a *app) applyCmd() *cobra.Command {
	var o outFlags
	var base, lambda string
	c := &cobra.Command{
		Use:   "apply --base BASE TV... --lambda L[,L2,...] -o OUT",
		Short: "Add scaled task vectors to a base model: θ = θ_base + Σ λ_i τ_i",
		Long: `apply writes θ_base + Σ_i λ_i τ_i (task arithmetic, Ilharco et al. 2023).
Each TV may be a stored task vector or a fine-tuned checkpoint (its task
vector is then taken on the fly). Give one λ for all vectors or one per
vector; a negative λ negates a task (forgetting by negation). Integer and
bool tensors, config and tokenizer files come from the base.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("apply needs at least one task vector or fine-tuned checkpoint after the flags")
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if lambda == "" {
				return errors.New("no --lambda given: pass one scaling coefficient for all task vectors or one per vector (e.g. --lambda 0.4 or --lambda 0.5,-1)")
			}
			l, err := parseFloats("lambda", lambda)
			if err != nil {
				return err
			}
			if l, err = perMember("lambda", l, len(args), "task vectors"); err != nil {
				return err
			}
			wo, err := o.options()
			if err != nil {
				return err
			}
			return a.writeSet("apply", base, args, o, wo, map[string]any{"lambda": l}, "applying", func(s *tasks.Set, wo tasks.WriteOptions, so tasks.StreamOptions) error {
				return tasks.Apply(s, toFloat32(l), o.out, wo, so)
			})
		},
	}
	c.Flags().StringVar(&base, "base", "", "pre-trained checkpoint the task vectors are added to (required)")
	c.Flags().StringVar(&lambda, "lambda", "", "scaling coefficient: one for all task vectors, or a comma-separated list with one per vector; negative negates")
	o.register(c.Flags(), "dtype of the output's float tensors (default: the base's)")
	markPaths(c.Flags(), pathInput, "base")
	a.addNonfinite(c)
	return argsAreInputs(c)
}

// tvCmd groups the task-vector algebra commands.
func (a *app) tvCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "tv",
		Short: "Task-vector algebra: add, sub, scale, neg",
		Long: `tv combines task vectors into a new task vector. Every subcommand needs
--base: the set of float tensors a task vector holds, and the check that the
vectors belong together, come from the base they were taken against. The
operands may also be fine-tuned checkpoints, whose task vectors are taken on
the fly.`,
	}
	type op struct {
		use, short string
		args       cobra.PositionalArgs
		coeffs     func(n int, by float64) []float32
		needsBy    bool
	}
	ops := []op{
		{"add A B... -o OUT", "Sum task vectors: τ = Σ τ_i", minArgs(2, "at least two task vectors"),
			func(n int, _ float64) []float32 { return repeat(1, n) }, false},
		{"sub A B -o OUT", "Subtract: τ = τ_A − τ_B", exactArgs(2, "two task vectors, A and B"),
			func(int, float64) []float32 { return []float32{1, -1} }, false},
		{"scale A --by C -o OUT", "Scale: τ = c · τ_A", exactArgs(1, "one task vector"),
			func(_ int, by float64) []float32 { return []float32{float32(by)} }, true},
		{"neg A -o OUT", "Negate: τ = −τ_A", exactArgs(1, "one task vector"),
			func(int, float64) []float32 { return []float32{-1} }, false},
	}
	for _, op := range ops {
		var o outFlags
		var base string
		var by float64
		sub := &cobra.Command{
			Use:   op.use,
			Short: op.short,
			Args:  op.args,
		}
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			if op.needsBy && !cmd.Flags().Changed("by") {
				return errors.New("scale needs --by C, the factor")
			}
			wo, err := o.options()
			if err != nil {
				return err
			}
			coeffs := op.coeffs(len(args), by)
			return a.writeSet("tv "+cmd.Name(), base, args, o, wo, map[string]any{"coefficients": coeffs}, cmd.Name(), func(s *tasks.Set, wo tasks.WriteOptions, so tasks.StreamOptions) error {
				return tasks.WriteCombination(s, coeffs, o.out, wo, so)
			})
		}
		sub.Flags().StringVar(&base, "base", "", "the pre-trained checkpoint the task vectors were taken against (required: it defines their tensors)")
		if op.needsBy {
			sub.Flags().Float64Var(&by, "by", 0, "scaling factor (required)")
		}
		o.register(sub.Flags(), taskVectorDType)
		markPaths(sub.Flags(), pathInput, "base")
		if op.needsBy {
			markRange(sub.Flags(), "by", "(-inf, inf)")
		}
		a.addNonfinite(sub)
		c.AddCommand(argsAreInputs(sub))
	}
	return c
}

// writeSet opens the set, checks the output early, runs write with progress
// and reports the result. The output of linearized fine-tunes (or of their
// task vectors) is marked linearized around base, as merge's is.
func (a *app) writeSet(command, base string, members []string, o outFlags, wo tasks.WriteOptions, params map[string]any, desc string, write func(*tasks.Set, tasks.WriteOptions, tasks.StreamOptions) error) error {
	start := time.Now()
	s, err := a.openSet(base, members)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := checkpoint.CheckOutput(o.out, s.Inputs(), o.force); err != nil {
		return err
	}
	linMeta, err := a.linearizedMeta(command, base, members)
	if err != nil {
		return err
	}
	wo.Metadata = withMetadata(wo.Metadata, linMeta)
	p := a.newProgress(desc)
	err = write(s, wo, tasks.StreamOptions{Progress: p.callback()})
	p.done()
	if err != nil {
		return err
	}
	return a.finish(writeSummary{Command: command, Output: o.out, Params: params, InputBytes: inputBytes(s), Saturated: o.saturatedCount()}, start)
}

func repeat(v float32, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%s takes %s, got %s", c.Name(), what, strconv.Itoa(len(args)))
		}
		return nil
	}
}
