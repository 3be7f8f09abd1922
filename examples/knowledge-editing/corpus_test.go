package main

import (
	"slices"
	"strings"
	"testing"
)

// TestCorpus: the generator is deterministic, every biography states each
// attribute of its person once with the full name, and the held-out
// templates never appear in training, though each of their words does.
func TestCorpus(t *testing.T) {
	s := corpusSettings{People: 200, Bios: 6, Seed: 3}
	a, err := newCorpus(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newCorpus(s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Docs, b.Docs) || !slices.Equal(a.People, b.People) {
		t.Fatal("two corpora of the same settings differ")
	}
	s.Seed = 4
	if c, err := newCorpus(s); err != nil || slices.Equal(c.Docs, a.Docs) {
		t.Fatal("another seed gives the same corpus")
	}
	if len(a.Docs) != 200*6 {
		t.Fatalf("%d documents, want %d", len(a.Docs), 200*6)
	}
	names := map[string]bool{}
	for _, p := range a.People {
		if names[p.Name] {
			t.Fatalf("name %q twice", p.Name)
		}
		names[p.Name] = true
	}
	words := map[string]bool{}
	for _, d := range a.Docs {
		for _, w := range strings.FieldsFunc(d, func(r rune) bool { return strings.ContainsRune(" .,?:'", r) }) {
			words[w] = true
		}
	}
	for pi, p := range a.People {
		docs := a.Docs[pi*6 : (pi+1)*6]
		for _, d := range docs {
			if n := strings.Count(d, p.Name); n != 5 {
				t.Fatalf("document %q names %s %d times, want 5", d, p.Name, n)
			}
			for ai := range attributes() {
				if !strings.Contains(d, " "+p.Values[ai]+".") {
					t.Fatalf("document %q lacks %s's %s %q", d, p.Name, attributes()[ai].Name, p.Values[ai])
				}
			}
		}
		for _, tpl := range a.Templates {
			if !tpl.HeldOut {
				continue
			}
			prompt := tpl.Prompt(p.Name)
			for _, d := range a.Docs {
				if strings.Contains(d, prompt) {
					t.Fatalf("held-out prompt %q appears in training document %q", prompt, d)
				}
			}
		}
	}
	heldOut := 0
	for _, tpl := range a.Templates {
		if !tpl.HeldOut {
			continue
		}
		heldOut++
		// The template's own words (not the name's) were all seen.
		for _, w := range strings.FieldsFunc(strings.ReplaceAll(tpl.Text, "{name}", ""), func(r rune) bool { return strings.ContainsRune(" .,?:'", r) }) {
			if !words[w] {
				t.Errorf("held-out template %q: the word %q never occurs in training", tpl.Text, w)
			}
		}
	}
	if heldOut != 3*len(attributes()) {
		t.Errorf("%d held-out templates, want 3 per attribute", heldOut)
	}
}
