package heads

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// Zero-shot prompt templates are text files, one template a line, with {}
// where the class name goes:
//
//	# comment
//	a photo of a {}.
//	a blurry photo of a {}.
//
// Lines whose first non-blank character is # are comments, blank lines are
// skipped and surrounding spaces are trimmed. Every template must hold {}
// (each {} is replaced); a file must hold at least one template, and no
// template twice.
//
// The defaults shipped in templates/ are embedded in the binary: mnist,
// cifar10 and gtsrb are the task-vectors reference's
// (mlfoundations/task_vectors src/datasets/templates.py); fashion-mnist,
// which the reference lacks, is editkit's own. Each file says which.

//go:embed templates/*.txt
var templateFiles embed.FS

// Placeholder is what a template holds where the class name goes.
const Placeholder = "{}"

// FallbackTemplate is the prompt used for a dataset without templates:
// CLIP's generic one.
const FallbackTemplate = "a photo of a {}."

// ParseTemplates reads templates from r (see above); name says where they
// come from in errors.
func ParseTemplates(r io.Reader, name string) ([]string, error) {
	var out []string
	first := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if line == 1 {
			t = strings.TrimPrefix(t, "\ufeff") // a byte-order mark some editors write
			t = strings.TrimSpace(t)
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if !strings.Contains(t, Placeholder) {
			return nil, fmt.Errorf("%s: line %d: template %q has no %s where the class name goes (e.g. %q)", name, line, t, Placeholder, FallbackTemplate)
		}
		if l, ok := first[t]; ok {
			return nil, fmt.Errorf("%s: line %d repeats the template of line %d (%q): a template counts once", name, line, l, t)
		}
		first[t] = line
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no templates: write one a line, with %s for the class name (e.g. %q); # starts a comment", name, Placeholder, FallbackTemplate)
	}
	return out, nil
}

// ReadTemplates reads a templates file.
func ReadTemplates(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading templates: %w", err)
	}
	return ParseTemplates(bytes.NewReader(data), file)
}

// templateKey folds a dataset name for matching: lower case, without '-',
// '_' and spaces, so that "Fashion-MNIST", "fashion_mnist" and
// "fashionmnist" are one name.
func templateKey(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', ' ':
			return -1
		}
		return r
	}, strings.ToLower(name))
}

// TemplateDatasets lists the datasets with shipped templates (file names
// without .txt), sorted.
func TemplateDatasets() []string {
	ents, _ := templateFiles.ReadDir("templates")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".txt"))
	}
	slices.Sort(out)
	return out
}

// templatesFile returns the shipped file of a dataset's templates, found
// by name regardless of case, '-', '_' and spaces (the base name of a path
// counts).
func templatesFile(dataset string) (string, bool) {
	key := templateKey(path.Base(strings.ReplaceAll(dataset, "\\", "/")))
	for _, d := range TemplateDatasets() {
		if templateKey(d) == key {
			return "templates/" + d + ".txt", true
		}
	}
	return "", false
}

// DefaultTemplates returns the shipped templates of a dataset (see
// TemplateDatasets; names match regardless of case, '-' and '_', and a
// path's base name counts); ok is false when none are shipped for it.
func DefaultTemplates(dataset string) (templates []string, ok bool) {
	file, ok := templatesFile(dataset)
	if !ok {
		return nil, false
	}
	data, err := templateFiles.ReadFile(file)
	if err == nil {
		templates, err = ParseTemplates(bytes.NewReader(data), file)
	}
	if err != nil {
		panic(err) // the shipped files are embedded and checked by the tests
	}
	return templates, true
}

// DefaultTemplatesFile returns the text of a dataset's shipped templates
// file, comments included (to start an edited copy from), or ok false.
func DefaultTemplatesFile(dataset string) (text string, ok bool) {
	file, ok := templatesFile(dataset)
	if !ok {
		return "", false
	}
	data, err := templateFiles.ReadFile(file)
	if err != nil {
		panic(err) // embedded
	}
	return string(data), true
}

// Prompt fills a template with a class name.
func Prompt(template, class string) string {
	return strings.ReplaceAll(template, Placeholder, class)
}
