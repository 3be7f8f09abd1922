package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// The synthetic biography corpus, in the spirit of the bioS data of
// "Physics of Language Models: Part 3.1" (Allen-Zhu and Li, 2023): invented
// people, each with five attributes drawn independently and uniformly, each
// written in several sentence templates; a biography is one sentence per
// attribute, each sentence with the person's full name and a template drawn
// at random, the sentences in random order (bioS "multi + permute + fullname").
// Every person gets several biographies, so each fact is seen in several
// wordings. Held-out templates never appear in training: they test whether
// the model can state a fact in a wording it has not seen it in.
//
// Templates come in four shapes, each attribute with two nouns (n1, n2) and
// two verb phrases (v1, v2):
//
//	A  "{name} {verb}"                         v1, v2   (training)
//	B  "{name}'s {noun} is"                    n1 training, n2 held out
//	C  "The {noun} of {name} is"               n2 training, n1 held out
//	Q  "Q: What is the {noun} of {name}? A:"   n1 training, n2 held out
//
// so each held-out template is a shape the model has seen with the
// attribute's other noun, and a noun it has seen in another shape; every
// word of it occurs in training. The value follows the prompt after a
// space, and a sentence ends with ".".

// attribute is one kind of fact.
type attribute struct {
	Name   string   `json:"name"`
	Values []string `json:"-"`
	Nouns  [2]string
	Verbs  [2]string
	// Editable: the values are single tokens, so every editing method can
	// set them (FT-L's objective trains all target tokens at the last
	// prompt position, so it can only set one).
	Editable bool
}

// A template is a prompt with "{name}" for the person; the value follows it.
type template struct {
	Attr    int    // index into attributes
	Shape   string // A, B, C or Q
	Text    string
	HeldOut bool
}

// Prompt fills in the name.
func (t template) Prompt(name string) string { return strings.ReplaceAll(t.Text, "{name}", name) }

// attributes are the five kinds of fact, with their values, nouns and verbs.
func attributes() []attribute {
	return []attribute{
		{Name: "birth city", Nouns: [2]string{"birthplace", "hometown"}, Verbs: [2]string{"was born in", "came into the world in"}, Editable: true,
			Values: strings.Fields("Lisbon Oslo Vienna Prague Dublin Madrid Berlin Paris Rome Athens Cairo Lima Quito Bogota Havana Nairobi Lagos Accra Dakar Tunis " +
				"Beirut Amman Tehran Kabul Delhi Mumbai Dhaka Bangkok Hanoi Manila Jakarta Seoul Tokyo Osaka Beijing Shanghai Sydney Perth Auckland Toronto " +
				"Montreal Chicago Boston Denver Seattle Houston Phoenix Dallas Atlanta Miami Helsinki Stockholm Warsaw Budapest Bucharest Sofia Zagreb Belgrade Riga Vilnius")},
		{Name: "birth date", Nouns: [2]string{"birthday", "date of birth"}, Verbs: [2]string{"was born on", "came into the world on"}},
		{Name: "university", Nouns: [2]string{"university", "alma mater"}, Verbs: [2]string{"studied at", "graduated from"}, Editable: true,
			Values: strings.Fields("Ashford Bellmore Carrow Dunmore Elmhurst Fairholm Glenwood Harwick Ivybridge Kingsley Larkspur Marlow Northcote Oakridge Pemberton " +
				"Queensbury Redmond Stanmore Thornbury Westbrook Alderton Brampton Calder Davenport Easton Foxley Grantham Hollins Ingram Jarrow " +
				"Kendal Linwood Milford Norwood Oxley Penrose Radley Selwyn Tilbury Wexford")},
		{Name: "field", Nouns: [2]string{"major", "field of study"}, Verbs: [2]string{"majored in", "specialized in"}, Editable: true,
			Values: strings.Fields("physics chemistry biology history economics philosophy mathematics linguistics geology astronomy architecture law medicine music " +
				"sociology psychology engineering statistics literature anthropology botany zoology geography journalism nursing theology archaeology ecology genetics robotics")},
		{Name: "employer", Nouns: [2]string{"employer", "workplace"}, Verbs: [2]string{"works for", "is employed by"}, Editable: true,
			Values: strings.Fields("Veltrix Orbiton Quantel Zephyra Lumora Kestrel Novacore Brightline Solvane Tessara Corvida Halcyon Maridian Pyxis Ardent " +
				"Velora Cindral Obsidia Truvance Nexora Fenwick Glimmer Harbora Ionix Jadeon Kyloris Lattice Mirova Nimbra Ostrava Pellucid Quorra Rivane " +
				"Sablewood Tandem Umbriel Vantora Wispell Xantho Yarrow Zolten Amberly Boreal Cascada Deltara Emberly Forsyth Galvane Heliox Istria")},
	}
}

// firstNames and lastNames make the people's full names.
func firstNames() []string {
	return strings.Fields("Alice Bob Carol David Emma Frank Grace Henry Irene Jack Karen Liam Maria Noah Olivia Peter Quinn Rachel Samuel Tara " +
		"Umar Vera Walter Xenia Yusuf Zoe Aaron Bianca Caleb Diana Ethan Fiona Gavin Hannah Isaac Julia Kevin Laura Martin Nina " +
		"Oscar Paula Ruben Sofia Thomas Ursula Victor Wendy Adrian Beatrice Colin Daria Elias Freya George Helena Ivan Jasmine Kurt Lena " +
		"Marcus Naomi Otto Priya Rafael Selma Tobias Uma Vincent Willa Anton Clara Dmitri Elena Felix Greta Hugo Ines Jonas Kira")
}

func lastNames() []string {
	return strings.Fields("Smith Jones Brown Taylor Wilson Evans Thomas Roberts Walker Wright Thompson White Hughes Edwards Green Hall Wood Harris Clarke Jackson " +
		"Turner Hill Moore Cooper Ward King Baker Morris Lee Martin Allen Carter Young Mitchell Bell Parker Scott Murphy Price Kelly " +
		"Bennett Griffin Foster Russell Fisher Hayes Graham Gray Reid Marshall Stone Hunter Palmer Mills Dixon Knight Barnes Holmes Rice Ellis " +
		"Ross Sharp Webb Porter Hart Lane Grant Fox Dean Burke Wells Hudson Watts Lambert Nash Hale Crane Frost Marsh Boyd " +
		"Pike Reeve Quill Thorne Vance Wade York Yates Noble Shaw Drake Moss Lowe Kemp Flynn Blake Carr Dale Finch Gale")
}

// months name the birth date's month.
func months() []string {
	return strings.Fields("January February March April May June July August September October November December")
}

// templates lists every template: the training ones of each attribute, then
// the held-out ones.
func templates() []template {
	var out []template
	for ai, a := range attributes() {
		n1, n2, v1, v2 := a.Nouns[0], a.Nouns[1], a.Verbs[0], a.Verbs[1]
		out = append(out,
			template{ai, "A", "{name} " + v1, false},
			template{ai, "A", "{name} " + v2, false},
			template{ai, "B", "{name}'s " + n1 + " is", false},
			template{ai, "C", "The " + n2 + " of {name} is", false},
			template{ai, "Q", "Q: What is the " + n1 + " of {name}? A:", false},
			template{ai, "B", "{name}'s " + n2 + " is", true},
			template{ai, "C", "The " + n1 + " of {name} is", true},
			template{ai, "Q", "Q: What is the " + n2 + " of {name}? A:", true},
		)
	}
	return out
}

// person is one invented person and the value of each attribute.
type person struct {
	Name   string    `json:"name"`
	Values [5]string `json:"values"` // by attribute
}

// corpus is the generated data: people, templates and training documents.
type corpus struct {
	People []person
	// Values are the values in use of each attribute (nil for the birth
	// date, which is drawn as month, day and year).
	Values    [][]string
	Templates []template
	// Docs are the training biographies, Bios of each person, people in
	// order.
	Docs []string
}

// corpusSettings size a corpus.
type corpusSettings struct {
	People int
	// Bios is the number of biographies of each person (each fact is seen
	// that many times).
	Bios int
	// Values is how many of each attribute's values are used (the first
	// ones of its list; 0: all).
	Values int
	Seed   uint64
}

// newCorpus generates a corpus: distinct full names, attributes drawn
// uniformly, Bios biographies each. It depends on the settings only.
func newCorpus(s corpusSettings) (*corpus, error) {
	attrs, first, last, monthNames := attributes(), firstNames(), lastNames(), months()
	if s.People < 1 || s.People > len(first)*len(last) {
		return nil, fmt.Errorf("corpus: %d people; the name lists allow 1 to %d", s.People, len(first)*len(last))
	}
	if s.Bios < 1 {
		return nil, fmt.Errorf("corpus: %d biographies per person, want at least 1", s.Bios)
	}
	r := rand.New(rand.NewPCG(s.Seed, 1))
	c := &corpus{Templates: templates()}
	for _, a := range attrs {
		if a.Values != nil {
			c.Values = append(c.Values, a.Values[:valueCount(a, s.Values)])
		} else {
			c.Values = append(c.Values, nil)
		}
	}
	// Distinct names: a random subset of all first × last pairs.
	pairs := r.Perm(len(first) * len(last))[:s.People]
	for _, p := range pairs {
		var pe person
		pe.Name = first[p/len(last)] + " " + last[p%len(last)]
		for ai, a := range attrs {
			if a.Values == nil { // the birth date
				pe.Values[ai] = fmt.Sprintf("%s %d, %d", monthNames[r.IntN(12)], 1+r.IntN(28), 1950+r.IntN(50))
			} else {
				pe.Values[ai] = c.Values[ai][r.IntN(len(c.Values[ai]))]
			}
		}
		c.People = append(c.People, pe)
	}
	train := make([][]template, len(attrs))
	for _, t := range c.Templates {
		if !t.HeldOut {
			train[t.Attr] = append(train[t.Attr], t)
		}
	}
	for _, pe := range c.People {
		for range s.Bios {
			sentences := make([]string, len(attrs))
			for ai := range attrs {
				t := train[ai][r.IntN(len(train[ai]))]
				sentences[ai] = sentence(t, pe)
			}
			r.Shuffle(len(sentences), func(i, j int) { sentences[i], sentences[j] = sentences[j], sentences[i] })
			c.Docs = append(c.Docs, strings.Join(sentences, " "))
		}
	}
	return c, nil
}

// valueCount is how many of a's values a corpus uses.
func valueCount(a attribute, n int) int {
	if n <= 0 || n > len(a.Values) {
		return len(a.Values)
	}
	return n
}

// editableValues lists the values of the editable attributes(), which the
// tokenizer keeps whole.
func (c *corpus) editableValues() []string {
	var out []string
	for ai, a := range attributes() {
		if a.Editable {
			out = append(out, c.Values[ai]...)
		}
	}
	return out
}

// sentence is a template filled in with a person's name and value.
func sentence(t template, p person) string {
	return t.Prompt(p.Name) + " " + p.Values[t.Attr] + "."
}

// heldOut returns the held-out templates of an attribute.
func (c *corpus) heldOut(attr int) []template {
	var out []template
	for _, t := range c.Templates {
		if t.Attr == attr && t.HeldOut {
			out = append(out, t)
		}
	}
	return out
}

// training returns the training templates of an attribute.
func (c *corpus) training(attr int) []template {
	var out []template
	for _, t := range c.Templates {
		if t.Attr == attr && !t.HeldOut {
			out = append(out, t)
		}
	}
	return out
}
