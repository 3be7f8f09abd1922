package main

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/memoir"
)

// counterFactRecord is one edit in EasyEdit's CounterFact-style JSON
// (what its WISE and MEMOIR scripts read and 'editkit memoir' reads).
type counterFactRecord struct {
	CaseID              int      `json:"case_id"`
	Subject             string   `json:"subject"`
	Attribute           string   `json:"attribute"`
	Prompt              string   `json:"prompt"`
	TargetNew           string   `json:"target_new"`
	GroundTruth         string   `json:"ground_truth"`
	RephrasePrompt      []string `json:"rephrase_prompt"`
	LocalityPrompt      []string `json:"locality_prompt"`
	LocalityGroundTruth []string `json:"locality_ground_truth"`
}

// editSet builds n counterfactual edits as EasyEdit's data sets hold them:
// distinct (person, attribute) pairs of the editable attributes in random
// order; each edit's prompt is the attribute's first training template
// ("{name} was born in", ...), its new target another value of the
// attribute drawn at random, its rephrasings the attribute's held-out
// templates (never seen in training), and its locality prompts facts of
// other people (training templates, a random editable attribute each) with
// their true values. excluded people are never edited (they give MEMOIR's
// background prompts).
func editSet(c *corpus, n, locality int, excluded map[int]bool, seed uint64) []counterFactRecord {
	r := rand.New(rand.NewPCG(seed, 3))
	var editable []int
	for ai, a := range attributes() {
		if a.Editable {
			editable = append(editable, ai)
		}
	}
	type pair struct{ person, attr int }
	var pairs []pair
	for pi := range c.People {
		if excluded[pi] {
			continue
		}
		for _, ai := range editable {
			pairs = append(pairs, pair{pi, ai})
		}
	}
	r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	pairs = pairs[:min(n, len(pairs))]
	out := make([]counterFactRecord, len(pairs))
	for i, pr := range pairs {
		p := c.People[pr.person]
		truth := p.Values[pr.attr]
		values := c.Values[pr.attr]
		target := truth
		for target == truth {
			target = values[r.IntN(len(values))]
		}
		rec := counterFactRecord{CaseID: i, Subject: p.Name, Attribute: attributes()[pr.attr].Name,
			Prompt: c.training(pr.attr)[0].Prompt(p.Name), TargetNew: target, GroundTruth: truth}
		for _, t := range c.heldOut(pr.attr) {
			rec.RephrasePrompt = append(rec.RephrasePrompt, t.Prompt(p.Name))
		}
		for range locality {
			other := pr.person
			for other == pr.person {
				other = r.IntN(len(c.People))
			}
			ai := editable[r.IntN(len(editable))]
			ts := c.training(ai)
			t := ts[r.IntN(len(ts))]
			rec.LocalityPrompt = append(rec.LocalityPrompt, t.Prompt(c.People[other].Name))
			rec.LocalityGroundTruth = append(rec.LocalityGroundTruth, c.People[other].Values[ai])
		}
		out[i] = rec
	}
	return out
}

// writeEditSet writes the records as a JSON array and reads them back
// through memoir.LoadEdits, as 'editkit memoir' would.
func writeEditSet(path string, recs []counterFactRecord) ([]memoir.EditRequest, error) {
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(path, append(data, '\n')); err != nil {
		return nil, err
	}
	edits, _, err := memoir.LoadEdits(path)
	return edits, err
}

// backgroundPeople picks the people MEMOIR's background prompts are about,
// who are then never edited.
func backgroundPeople(c *corpus, n int, seed uint64) map[int]bool {
	r := rand.New(rand.NewPCG(seed, 4))
	out := map[int]bool{}
	for _, pi := range r.Perm(len(c.People))[:min(n, len(c.People)/4)] {
		out[pi] = true
	}
	return out
}

// backgroundPrompts are MEMOIR's irrelevant prompts: a training-template
// prompt about each background person, the attribute and template drawn at
// random (the reference averages the features of irrelevant prompts of
// its data set).
func backgroundPrompts(c *corpus, people map[int]bool, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 5))
	var out []string
	for _, pi := range slices.Sorted(maps.Keys(people)) {
		ai := r.IntN(len(attributes()))
		ts := c.training(ai)
		out = append(out, ts[r.IntN(len(ts))].Prompt(c.People[pi].Name))
	}
	return out
}
