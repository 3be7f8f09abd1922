package heads

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseTemplates(t *testing.T) {
	got, err := ParseTemplates(strings.NewReader("\ufeff# a comment\n\n  a photo of a {}.  \n   # indented comment\n\t\na {} with #hashtag\r\n{}\n"), "t.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a photo of a {}.", "a {} with #hashtag", "{}"}
	if !slices.Equal(got, want) {
		t.Errorf("ParseTemplates = %q, want %q", got, want)
	}
	for _, c := range []struct{ name, text, want string }{
		{"missing placeholder", "a photo of a {}.\na photo of a cat.\n", "line 2"},
		{"braces with a name", "a photo of a {c}.\n", "no {}"},
		{"empty", "", "holds no templates"},
		{"only comments", "# nothing\n\n   \n", "holds no templates"},
		{"repeated", "a {}.\n# x\na {}.\n", "line 3 repeats the template of line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTemplates(strings.NewReader(c.text), "bad.txt")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.txt") {
				t.Errorf("error %v, want one naming bad.txt and saying %q", err, c.want)
			}
		})
	}
}

func TestReadTemplates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mine.txt")
	if err := os.WriteFile(path, []byte("# mine\nitap of a {}.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTemplates(path)
	if err != nil || !slices.Equal(got, []string{"itap of a {}."}) {
		t.Errorf("ReadTemplates = %q, %v", got, err)
	}
	if _, err := ReadTemplates(filepath.Join(t.TempDir(), "missing.txt")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestDefaultTemplates(t *testing.T) {
	if got := TemplateDatasets(); !slices.Equal(got, []string{"cifar10", "fashion-mnist", "gtsrb", "mnist"}) {
		t.Errorf("TemplateDatasets = %q", got)
	}
	for _, c := range []struct {
		name  string
		n     int
		first string
	}{
		{"mnist", 1, `a photo of the number: "{}".`},
		{"MNIST", 1, `a photo of the number: "{}".`},
		{"cifar10", 18, "a photo of a {}."},
		{"/data/vision/CIFAR10", 18, "a photo of a {}."},
		{"gtsrb", 3, `a zoomed in photo of a "{}" traffic sign.`},
		{"fashion-mnist", 6, "a photo of a {}."},
		{"Fashion_MNIST", 6, "a photo of a {}."},
		{"fashionmnist", 6, "a photo of a {}."},
	} {
		got, ok := DefaultTemplates(c.name)
		if !ok || len(got) != c.n || got[0] != c.first {
			t.Errorf("DefaultTemplates(%q) = %d templates starting %q (ok %v), want %d starting %q", c.name, len(got), first(got), ok, c.n, c.first)
		}
	}
	cifar, _ := DefaultTemplates("cifar10")
	if cifar[17] != "a photo of the big {}." {
		t.Errorf("last CIFAR-10 template %q", cifar[17])
	}
	if _, ok := DefaultTemplates("svhn"); ok {
		t.Error("templates for svhn, which ships none")
	}
	if text, ok := DefaultTemplatesFile("gtsrb"); !ok || !strings.Contains(text, "task_vectors") {
		t.Errorf("DefaultTemplatesFile(gtsrb) = %q, %v", text, ok)
	}
	if got := Prompt(`a photo of the number: "{}".`, "7"); got != `a photo of the number: "7".` {
		t.Errorf("Prompt = %q", got)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
