package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/editkit/editkit/memoir"
)

// thresholdFlag is MEMOIR's --threshold: a fixed τ in [0, 1], or "auto"
// for the τ calibrated on the chance overlap of masks
// (memoir.ChanceThreshold at memoir.DefaultFalseRoutingRate).
type thresholdFlag struct {
	tau  float64
	auto bool
}

func (f *thresholdFlag) String() string {
	if f.auto {
		return "auto"
	}
	return strconv.FormatFloat(f.tau, 'g', -1, 64)
}

func (f *thresholdFlag) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "auto") {
		f.auto = true
		return nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	switch {
	case err != nil:
		return fmt.Errorf("--threshold %s: give a mask overlap in [0, 1] (the reference's 0.4) or auto", s)
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Errorf("--threshold %s: give a finite number in [0, 1] (the reference's 0.4) or auto", s)
	case v < 0 || v > 1:
		return fmt.Errorf("--threshold %s: it must be in [0, 1] (the reference's 0.4), or auto", s)
	}
	f.tau, f.auto = v, false
	return nil
}

func (f *thresholdFlag) Type() string { return "τ|auto" }

// apply sets the routing of a MEMOIR configuration.
func (f *thresholdFlag) apply(c *memoir.Config) {
	c.Threshold, c.FalseRoutingRate = f.tau, 0
	if f.auto {
		c.FalseRoutingRate = memoir.DefaultFalseRoutingRate
	}
}

// thresholdUsage is the --threshold help.
var thresholdUsage = fmt.Sprintf("MEMOIR: mask overlap τ from which a query uses an edit's mask, or auto: the least τ that masks overlapping only by chance reach for an unrelated query with probability ≤ %g, given the MLP width, k and the number of edits stored (recomputed as edits are added)", memoir.DefaultFalseRoutingRate)
