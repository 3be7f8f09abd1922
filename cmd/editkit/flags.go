package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/spf13/pflag"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// outFlags are the flags of every command that writes a checkpoint.
type outFlags struct {
	out       string
	dtype     string
	shardSize string
	force     bool
	saturate  bool
	saturated *atomic.Int64 // values saturated, counted while writing
}

func (o *outFlags) register(fs *pflag.FlagSet, dtypeHelp string) {
	fs.StringVarP(&o.out, "output", "o", "", "output checkpoint: a folder, or a file ending in .safetensors (required)")
	fs.StringVar(&o.dtype, "dtype", "", dtypeHelp+" (float32, bfloat16, float16 or float64)")
	fs.StringVar(&o.shardSize, "shard-size", "5GB", "largest shard of a folder output, e.g. 5GB, 500MB, 2GiB or bytes")
	fs.BoolVar(&o.force, "force", false, "replace the output if it exists")
	fs.BoolVar(&o.saturate, "saturate", false, "write values beyond the output dtype's range (float16: ±65504) as its largest finite value instead of failing")
	markPaths(fs, pathOutput, "output")
}

// saturatedCount is how many values the write saturated.
func (o *outFlags) saturatedCount() int64 {
	if o.saturated == nil {
		return 0
	}
	return o.saturated.Load()
}

// options checks the output flags and turns them into write options, so a
// bad value is reported before any input is read.
func (o *outFlags) options() (tasks.WriteOptions, error) {
	var wo tasks.WriteOptions
	if o.out == "" {
		return wo, errors.New("no output given: pass -o PATH")
	}
	if o.dtype != "" {
		dt, err := checkpoint.ParseFloatDType(o.dtype)
		if err != nil {
			return wo, fmt.Errorf("--dtype: %w", err)
		}
		wo.DType = dt
	}
	n, err := parseSize(o.shardSize)
	if err != nil {
		return wo, fmt.Errorf("--shard-size: %w", err)
	}
	wo.ShardSize = n
	wo.Force = o.force
	o.saturated = new(atomic.Int64)
	wo.Saturate, wo.Saturated = o.saturate, o.saturated
	return wo, nil
}

// sizeUnits are the byte units parseSize accepts: decimal as Hugging Face's
// max_shard_size spells them ("5GB" = 5·10⁹) and binary with an i.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12},
	{"b", 1},
}

// parseSize parses a byte size such as "5GB", "500MB", "2GiB", "1.5GB" or
// "1048576".
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a positive size (e.g. 5GB, 500MB, 2GiB, or bytes)", s)
	}
	n := int64(v * float64(mult))
	if n < 1 {
		return 0, fmt.Errorf("%q is less than one byte", s)
	}
	return n, nil
}

// parseFloats parses a comma-separated list of numbers given to flag.
func parseFloats(flag, s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--%s: %q is not a number (give one value, or a comma-separated list)", flag, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// perMember expands one value to n, or checks there are n.
func perMember(flag string, v []float64, n int, what string) ([]float64, error) {
	switch len(v) {
	case n:
		return v, nil
	case 1:
		out := make([]float64, n)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	}
	return nil, fmt.Errorf("--%s has %d values for %d %s: give one for all or one per %s", flag, len(v), n, what, strings.TrimSuffix(what, "s"))
}

func toFloat32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
