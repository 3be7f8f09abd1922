// Command editkit edits neural-network checkpoints in weight space: it
// builds, combines and applies task vectors, merges fine-tuned models and
// inspects safetensors checkpoints. Each command is a thin layer over the
// checkpoint, tasks and merge packages: it parses flags, calls them and
// prints what they return.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
)

func main() {
	sig := checkpoint.ExitOnSignal(os.Stderr, "editkit")
	a := &app{stdout: os.Stdout, stderr: os.Stderr, interrupted: sig.Caught}
	sig.Exit(a.run(os.Args[1:]))
}

// run executes the command line and returns the exit status; errors are
// printed as "editkit: <message>".
func run(args []string, stdout, stderr io.Writer) int {
	return (&app{stdout: stdout, stderr: stderr}).run(args)
}

func (a *app) run(args []string) int {
	root := a.rootCmd()
	root.SetArgs(expandModels(args))
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	if err := root.Execute(); err != nil {
		// After a signal the work fails as its outputs vanish: the signal
		// handler's line says what happened.
		if a.interrupted == nil || !a.interrupted() {
			fmt.Fprintf(a.stderr, "editkit: %v\n", err)
		}
		return 1
	}
	return 0
}

// app holds the global flags, the output streams and, once a command's
// flags are checked, its outputs.
type app struct {
	stdout, stderr io.Writer
	quiet          bool
	json           bool
	allowNonfinite bool
	derived        map[*cobra.Command]derivedPaths
	out            *checkpoint.Outputs
	// interrupted reports whether a signal stopped the run (nil: never).
	interrupted func() bool
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "editkit",
		Short: "Edit neural-network checkpoints in weight space",
		Long: `editkit builds and combines task vectors (τ = θ_finetuned − θ_base), applies
them to a base model, merges fine-tuned models (task arithmetic, TIES, DARE,
Breadcrumbs, consensus/TALL masks, Model Stock, SLERP, LiNeS) and inspects
safetensors checkpoints. It streams tensors in chunks, so memory stays bounded
whatever the model's size. It also fine-tunes and evaluates ViT and CLIP
image encoders (head, finetune, eval, embed, merge --search), also in the
tangent space of the pre-trained model (finetune --linearized, --linearize-at,
disentangle), removes backdoors from them (backdoor, finetune --poison, eval
--trigger, unlearn), and edits the knowledge of LLaMA-family models (convert,
generate, memoir).

A checkpoint is a .safetensors file, a folder holding model.safetensors, or a
sharded folder with model.safetensors.index.json. Outputs appear only once
complete: a failed run leaves nothing behind, and neither does one stopped by
SIGINT, SIGTERM or SIGHUP (exit status 130, 143, 129). No output may be an
input or lie inside one, and an existing output is replaced only with --force.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print no progress and no summary on stderr")
	pf.BoolVar(&a.json, "json", false, "print a machine-readable JSON result on stdout")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see 'editkit %s --help')", err, c.Name())
	})
	root.AddCommand(
		a.inspectCmd(),
		a.taskVectorCmd(),
		a.applyCmd(),
		a.tvCmd(),
		a.normsCmd(),
		a.cosineCmd(),
		a.mergeCmd(),
		a.benchCmd(),
		a.embedCmd(),
		a.headCmd(),
		a.evalCmd(),
		a.convertCmd(),
		a.finetuneCmd(),
		a.generateCmd(),
		a.memoirCmd(),
		a.backdoorCmd(),
		a.unlearnCmd(),
		a.disentangleCmd(),
	)
	a.guardCommands(root)
	return root
}

// addNonfinite registers --allow-nonfinite on commands that read tensors.
func (a *app) addNonfinite(c *cobra.Command) {
	c.Flags().BoolVar(&a.allowNonfinite, "allow-nonfinite", false, "let NaN and ±Inf values through instead of failing on the first one")
}

// expandModels rewrites "--models A B C" as "--models A --models B
// --models C", so the merge command takes its models as a list after one
// flag, as mergekit users write them, while pflag parses one value per flag.
// Everything from "--" on is left alone.
func expandModels(args []string) []string {
	out := make([]string, 0, len(args))
	in := false
	for i := 0; i < len(args); i++ {
		s := args[i]
		switch {
		case s == "--":
			return append(out, args[i:]...)
		case s == "--models":
			out = append(out, s)
			if i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			in = true
		case strings.HasPrefix(s, "--models="):
			out = append(out, s)
			in = true
		case in && !strings.HasPrefix(s, "-"):
			out = append(out, "--models", s)
		default:
			in = false
			out = append(out, s)
		}
	}
	return out
}
