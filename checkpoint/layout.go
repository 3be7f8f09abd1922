package checkpoint

import (
	"fmt"
	"regexp"
	"strconv"
)

// A family names an architecture's residual-block naming.
type family struct {
	name string
	// re matches a tensor inside block i; its first group is the block prefix
	// (one prefix per stack of blocks, e.g. the vision and text towers) and its
	// second the block index.
	re *regexp.Regexp
}

// families is the naming table of the architectures editkit knows. Order
// matters where patterns nest (open_clip's text tower is
// "transformer.resblocks", its image tower "visual.transformer.resblocks").
var families = []family{
	{"hf-vit", regexp.MustCompile(`^((?:[\w.]*\.)?vit\.encoder\.layer\.)(\d+)\.`)},
	{"hf-clip", regexp.MustCompile(`^((?:[\w.]*\.)?(?:vision|text)_model\.encoder\.layers\.)(\d+)\.`)},
	{"openai-clip", regexp.MustCompile(`^((?:[\w.]*\.)?(?:visual\.)?transformer\.resblocks\.)(\d+)\.`)},
	{"llama", regexp.MustCompile(`^((?:[\w.]*\.)?model\.layers\.)(\d+)\.`)},
	{"gpt2", regexp.MustCompile(`^((?:transformer\.)?h\.)(\d+)\.`)},
}

// Depth is a tensor's position in a stack of residual blocks.
type Depth struct {
	// Stack names the stack of blocks (e.g. "visual.transformer.resblocks.");
	// empty for tensors outside every block.
	Stack string
	// Block is the 0-based index of the block, Blocks the stack's size.
	Block, Blocks int
}

// InBlock reports whether the tensor lies inside a residual block.
func (d Depth) InBlock() bool { return d.Stack != "" }

// Layout maps a checkpoint's tensor names to block depth.
type Layout struct {
	// Family is the detected architecture family, or "custom" for a
	// user-supplied pattern, or "none".
	Family string
	depth  map[string]Depth
}

// NewLayout detects the block structure of the named tensors. A non-empty
// pattern overrides detection: it must match inside-block names with a
// capture group for the block index (or a group named "block"); the part of
// the name before that group identifies the stack.
func NewLayout(names []string, pattern string) (*Layout, error) {
	l := &Layout{Family: "none", depth: make(map[string]Depth, len(names))}
	var re *regexp.Regexp
	group := 2
	if pattern != "" {
		var err error
		if re, err = regexp.Compile(pattern); err != nil {
			return nil, fmt.Errorf("--layer-pattern %q: %w", pattern, err)
		}
		group = re.SubexpIndex("block")
		if group < 0 {
			if re.NumSubexp() < 1 {
				return nil, fmt.Errorf("--layer-pattern %q needs a capture group around the block index, e.g. `blocks\\.(\\d+)\\.`", pattern)
			}
			group = 1
		}
		l.Family = "custom"
	} else {
		best := 0
		for _, f := range families {
			n := 0
			for _, name := range names {
				if f.re.MatchString(name) {
					n++
				}
			}
			if n > best {
				best, re, l.Family = n, f.re, f.name
			}
		}
		if re == nil {
			return l, nil
		}
	}
	counts := make(map[string]int)
	for _, name := range names {
		m := re.FindStringSubmatchIndex(name)
		if m == nil || m[2*group] < 0 {
			continue
		}
		i, err := strconv.Atoi(name[m[2*group]:m[2*group+1]])
		if err != nil || i < 0 {
			return nil, fmt.Errorf("layer pattern %q: tensor %q: block index %q is not a non-negative integer", re, name, name[m[2*group]:m[2*group+1]])
		}
		// The whole name up to the index names the stack, also for an
		// unanchored pattern: "visual.blocks.3" and "text.blocks.3" under
		// `blocks\.(\d+)` are two towers, not one.
		stack := name[:m[2*group]]
		if stack == "" {
			stack = "blocks"
		}
		l.depth[name] = Depth{Stack: stack, Block: i}
		counts[stack] = max(counts[stack], i+1)
	}
	if pattern != "" && len(l.depth) == 0 {
		return nil, fmt.Errorf("--layer-pattern %q matches no tensor name", pattern)
	}
	for name, d := range l.depth {
		d.Blocks = counts[d.Stack]
		l.depth[name] = d
	}
	return l, nil
}

// Depth returns the tensor's block depth; tensors outside blocks
// (embeddings, norms outside blocks, projections, heads) have depth zero.
func (l *Layout) Depth(name string) Depth { return l.depth[name] }

// Stacks returns each stack of blocks with its number of blocks.
func (l *Layout) Stacks() map[string]int {
	out := make(map[string]int)
	for _, d := range l.depth {
		out[d.Stack] = d.Blocks
	}
	return out
}
