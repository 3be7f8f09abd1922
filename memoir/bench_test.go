package memoir

import (
	"testing"
)

// BenchmarkMEMOIREdit times one MEMOIR edit of stories260K with the default
// settings (30 iterations at most, 11 augmented sequences), cycling through
// the TinyStories edit set; it reports the memory the edits add (one
// bit-packed mask each; W_m is fixed).
func BenchmarkMEMOIREdit(b *testing.B) {
	base := stories(b)
	edits := tinyEdits(b)
	m, err := NewMEMOIR(base, DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Edit(edits[0]); err != nil { // compiles the graphs
		b.Fatal(err)
	}
	iters := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := m.Edit(edits[(i+1)%len(edits)])
		if err != nil {
			b.Fatal(err)
		}
		iters += st.Iterations
	}
	b.ReportMetric(float64(iters)/float64(b.N), "iters/edit")
	b.ReportMetric(float64(MaskBytes(base.Model.Config.IntermediateSize)), "B/edit")
	b.ReportMetric(float64(4*len(m.Memory())), "B-memory")
}

// BenchmarkMEMOIRQuery times a routed teacher-forced query (the prompt's
// mask, then the edited forward pass) after 10 edits.
func BenchmarkMEMOIRQuery(b *testing.B) {
	base := stories(b)
	edits := tinyEdits(b)
	cfg := DefaultConfig()
	cfg.Iterations = 1
	m, err := NewMEMOIR(base, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ApplyEdits(m, edits[:10], nil); err != nil {
		b.Fatal(err)
	}
	ids, pl, err := base.Encode(edits[3].Prompt, edits[3].Target)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := m.Predict(ids, pl); err != nil {
			b.Fatal(err)
		}
	}
}
