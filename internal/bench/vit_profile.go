package bench

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// ProfileSummary is where a CPU profile's time went: the functions with the
// most samples of their own (flat) and in their calls (cumulative), and a
// coarse breakdown of the flat time.
type ProfileSummary struct {
	// Seconds of CPU time sampled (all threads together).
	Seconds float64           `json:"seconds"`
	Top     []ProfileFunction `json:"top"`
	// Breakdown shares the flat time among matrix products, other GoMLX
	// ops, the Go runtime (GC, scheduling, memory) and the rest.
	Breakdown []ProfileShare `json:"breakdown"`
}

// ProfileFunction is one function's share of the sampled time.
type ProfileFunction struct {
	Name string  `json:"name"`
	Flat float64 `json:"flat"` // fraction of the total, own time
	Cum  float64 `json:"cum"`  // fraction of the total, with callees
}

// ProfileShare is one category's share of the flat time.
type ProfileShare struct {
	Category string  `json:"category"`
	Share    float64 `json:"share"`
}

// profileCategory assigns a function to a coarse category.
func profileCategory(fn string) string {
	lower := strings.ToLower(fn)
	switch {
	case strings.Contains(lower, "dotgeneral") || strings.Contains(lower, "gemm") || strings.Contains(lower, "matmul"):
		return "matrix products"
	case strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "internal/runtime") || strings.HasPrefix(fn, "gcWriteBarrier"):
		return "Go runtime (GC, scheduler, memory)"
	case strings.Contains(fn, "simplego") || strings.Contains(fn, "gomlx"):
		return "other GoMLX ops and graph code"
	case strings.HasPrefix(fn, "github.com/editkit/"):
		return "editkit"
	}
	return "other (cgo/XLA, syscalls, std library)"
}

// SummarizeProfile reads a pprof CPU profile and keeps the top n functions
// by flat time.
func SummarizeProfile(data []byte, n int) (*ProfileSummary, error) {
	p, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		vi = len(p.SampleType) - 1
	}
	flat, cum := map[string]int64{}, map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		seen := map[string]bool{}
		leaf := true
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function == nil {
					continue
				}
				name := line.Function.Name
				// A sample taken in an asynchronous preemption belongs to
				// the function that was preempted, its caller.
				if leaf && name != "runtime.asyncPreempt" {
					flat[name] += v
					leaf = false
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	sum := &ProfileSummary{Seconds: float64(total) / 1e9}
	if total == 0 {
		return sum, nil
	}
	names := make([]string, 0, len(flat))
	byCat := map[string]int64{}
	for name, v := range flat {
		names = append(names, name)
		byCat[profileCategory(name)] += v
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(flat[b], flat[a]), cmp.Compare(a, b)) })
	for _, name := range names[:min(n, len(names))] {
		sum.Top = append(sum.Top, ProfileFunction{Name: name, Flat: float64(flat[name]) / float64(total), Cum: float64(cum[name]) / float64(total)})
	}
	for c, v := range byCat {
		sum.Breakdown = append(sum.Breakdown, ProfileShare{Category: c, Share: float64(v) / float64(total)})
	}
	slices.SortFunc(sum.Breakdown, func(a, b ProfileShare) int {
		return cmp.Or(cmp.Compare(b.Share, a.Share), cmp.Compare(a.Category, b.Category))
	})
	return sum, nil
}

// String renders the summary as a few lines.
func (s *ProfileSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %.1f s of CPU sampled (every 10 ms: short runs give few samples); flat time by category:", s.Seconds)
	for _, c := range s.Breakdown {
		fmt.Fprintf(&b, " %s %.0f%%;", c.Category, 100*c.Share)
	}
	b.WriteString("\n  top functions (flat%, cum%):\n")
	for _, f := range s.Top {
		fmt.Fprintf(&b, "    %5.1f%% %5.1f%%  %s\n", 100*f.Flat, 100*f.Cum, f.Name)
	}
	return b.String()
}
