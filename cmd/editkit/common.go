package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// openSet opens a base and members, applying --allow-nonfinite.
func (a *app) openSet(base string, members []string) (*tasks.Set, error) {
	if base == "" {
		return nil, errors.New("no base given: pass --base CHECKPOINT (the pre-trained model the task vectors are taken against)")
	}
	s, err := tasks.OpenSet(base, members)
	if err != nil {
		return nil, err
	}
	s.AllowNonfinite = a.allowNonfinite
	return s, nil
}

// writeSummary is the --json result of the commands that write a checkpoint.
type writeSummary struct {
	Command    string         `json:"command"`
	Output     string         `json:"output"`
	Method     string         `json:"method,omitempty"`
	Params     map[string]any `json:"params,omitempty"`
	Passes     int            `json:"passes,omitempty"`
	Seconds    float64        `json:"seconds"`
	InputBytes int64          `json:"input_bytes"`
	// Saturated counts the values written as the dtype's largest finite
	// value (--saturate).
	Saturated int64 `json:"saturated,omitempty"`
}

// inputBytes is the size of the set's base and members.
func inputBytes(s *tasks.Set) int64 {
	n := s.Base.Size()
	for _, m := range s.Members {
		n += m.Size()
	}
	return n
}

// finish reports a written checkpoint: JSON on stdout with --json, a line
// on stderr otherwise (unless --quiet).
func (a *app) finish(sum writeSummary, start time.Time) error {
	sum.Seconds = time.Since(start).Seconds()
	if a.json {
		return a.printJSON(sum)
	}
	if !a.quiet {
		what := sum.Command
		if sum.Method != "" {
			what += " " + sum.Method
		}
		passes := ""
		if sum.Passes > 0 {
			passes = fmt.Sprintf(", %d pass(es)", sum.Passes)
		}
		saturated := ""
		if sum.Saturated > 0 {
			saturated = fmt.Sprintf(", %d values beyond the dtype's range saturated", sum.Saturated)
		}
		fmt.Fprintf(a.stderr, "editkit: %s: wrote %s (%s read%s%s, %.1fs)\n", what, sum.Output, humanBytes(sum.InputBytes), passes, saturated, sum.Seconds)
	}
	return nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// humanBytes formats a byte count in decimal units (checkpoint.FormatBytes).
func humanBytes(n int64) string { return checkpoint.FormatBytes(n) }
