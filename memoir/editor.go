package memoir

import (
	"fmt"
	"strings"
)

// Method names an editing method.
type Method string

// The methods of this package.
const (
	MethodMEMOIR Method = "memoir"
	MethodGRACE  Method = "grace"
	MethodFTL    Method = "ft-l"
)

// Methods lists the methods in the order tables show them.
func Methods() []Method { return []Method{MethodMEMOIR, MethodGRACE, MethodFTL} }

// ParseMethod reads a method name (case-insensitive; "ft", "ftl" and
// "ft_l" are FT-L).
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "memoir":
		return MethodMEMOIR, nil
	case "grace":
		return MethodGRACE, nil
	case "ft-l", "ftl", "ft_l", "ft":
		return MethodFTL, nil
	}
	return "", fmt.Errorf("unknown editing method %q (memoir, grace or ft-l)", s)
}

// Editor is a knowledge-editing method bound to a base model: it applies
// edits one after another (the sequential, lifelong protocol) and answers
// teacher-forced queries with the edited model.
type Editor interface {
	// Method names the method.
	Method() Method
	// Layer is the decoder layer whose MLP down-projection it edits.
	Layer() int
	// Edits is the number of edits applied so far.
	Edits() int
	// Edit applies one more edit.
	Edit(req EditRequest) (EditStats, error)
	// Predict returns the edited model's argmax next token at every
	// position of ids, a query whose prompt is ids[:promptLen], and
	// whether the edit memory took part (MEMOIR: the prompt was routed to
	// a stored mask; GRACE: a key lies within its radius; FT-L: always).
	Predict(ids []int, promptLen int) (pred []int, active bool, err error)
	// Save writes the edit state as one safetensors file (see Load).
	Save(path string, o SaveOptions) error
	// Reset forgets every edit: the editor is as new (its setup, such as
	// MEMOIR's background mean and templates, is kept).
	Reset() error
}

// EditStats describe one edit.
type EditStats struct {
	// Iterations run (optimizer steps, or loss evaluations where the
	// method stops before stepping).
	Iterations int `json:"iterations"`
	// Loss is the last training loss computed.
	Loss float64 `json:"loss"`
	// Seconds the edit took.
	Seconds float64 `json:"seconds"`
	// Note is method-specific: GRACE's codebook action (add, split,
	// expand, none), MEMOIR's mask overlap with the closest earlier edit.
	Note string `json:"note,omitempty"`
}

// Progress reports the progress of a long step: done of total units of
// stage ("edit", "eval").
type Progress func(stage string, done, total int)

// New creates an editor of a method with its default settings at layer
// (−1: the method's default, DefaultLayer).
func New(method Method, base *Base, layer int) (Editor, error) {
	switch method {
	case MethodMEMOIR:
		c := DefaultConfig()
		c.Layer = layer
		return NewMEMOIR(base, c)
	case MethodGRACE:
		c := DefaultGRACEConfig()
		c.Layer = layer
		return NewGRACE(base, c)
	case MethodFTL:
		c := DefaultFTLConfig()
		c.Layer = layer
		return NewFTL(base, c)
	}
	return nil, fmt.Errorf("unknown editing method %q (memoir, grace or ft-l)", method)
}

// resolveLayer turns −1 into the default layer and checks the result.
func (b *Base) resolveLayer(layer int) (int, error) {
	if layer == -1 {
		layer = DefaultLayer(b.Model.Config.NumHiddenLayers)
	}
	return layer, b.checkLayer(layer)
}
