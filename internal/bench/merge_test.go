package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClaimWorkDir: bench merge --dir writes only into a new or empty folder,
// or one it marked before for the same family.
func TestClaimWorkDir(t *testing.T) {
	root := t.TempDir()
	small, big := FamilyForBytes(64<<20), FamilyForBytes(256<<20)

	fresh := filepath.Join(root, "new")
	if err := claimWorkDir(fresh, small); err != nil {
		t.Fatalf("a new folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, workMarker)); err != nil {
		t.Fatalf("the folder is not marked: %v", err)
	}
	if err := claimWorkDir(fresh, small); err != nil {
		t.Errorf("reusing the benchmark's own folder: %v", err)
	}
	if err := claimWorkDir(fresh, big); err == nil || !strings.Contains(err.Error(), "another size") {
		t.Errorf("another --size in the same folder: %v", err)
	}

	user := filepath.Join(root, "user")
	if err := os.MkdirAll(filepath.Join(user, "out0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := claimWorkDir(user, small); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a user's folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(user, workMarker)); err == nil {
		t.Error("a refused folder was marked")
	}
}
