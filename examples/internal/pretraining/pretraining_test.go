package pretraining

import (
	"strings"
	"testing"
)

// TestStamp: a folder's stages are reused only under the settings that made
// them, and an interrupted --redo with new settings blocks reuse until a
// run finishes.
func TestStamp(t *testing.T) {
	out := t.TempDir()
	type settings struct{ Steps int }
	a, b := settings{1}, settings{2}
	steps := []struct {
		what      string
		st        settings
		redo      bool
		finish    bool
		wantError string
	}{
		{"first run", a, false, true, ""},
		{"same settings", a, false, false, ""},
		{"other settings", b, false, false, "other settings"},
		{"redo with other settings, interrupted", b, true, false, ""},
		{"reuse after the interrupted redo", b, false, false, "did not finish"},
		{"redo again, to the end", b, true, true, ""},
		{"reuse after the finished redo", b, false, false, ""},
	}
	for _, s := range steps {
		err := Stamp(out, s.st, s.redo)
		if s.wantError == "" && err != nil || s.wantError != "" && (err == nil || !strings.Contains(err.Error(), s.wantError)) {
			t.Fatalf("%s: %v, want %q", s.what, err, s.wantError)
		}
		if s.finish {
			if err := Finish(out); err != nil {
				t.Fatalf("%s: Finish: %v", s.what, err)
			}
		}
	}
}
