package identity

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/berth-registry/berth/internal/auth"
)

// The actions column of scope_maps holds a JSON array in ACR's stored form,
// one string per action. An action limited to tag patterns is an object in
// that array instead, {"action": "repositories/team/app/content/write",
// "tags": ["dev-*", "pr-*"]}, so that the limits live in the scope map's own
// row: they change in the same statement as the map, reach other nodes with
// the map's change record, and are copied by `berth migrate` with it. A map
// without tag limits is stored exactly as before.

// encodeActions is the stored JSON of a scope map's actions and tag limits.
func encodeActions(def auth.ScopeMap) string {
	if len(def.Tags) == 0 {
		b, _ := json.Marshal(def.Actions)
		return string(b)
	}
	out := make([]any, 0, len(def.Actions))
	for _, a := range def.Actions {
		if tags := def.Tags[a]; len(tags) > 0 {
			out = append(out, auth.Rule{Action: a, Tags: tags})
		} else {
			out = append(out, a)
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// decodeActions reads what encodeActions stored into def.
func decodeActions(raw string, def *auth.ScopeMap) error {
	var items []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &items); err != nil {
		return err
	}
	def.Actions = make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			def.Actions = append(def.Actions, s)
			continue
		}
		var r auth.Rule
		if err := json.Unmarshal(it, &r); err != nil {
			return fmt.Errorf("action %s: %w", it, err)
		}
		def.Actions = append(def.Actions, r.Action)
		if len(r.Tags) > 0 {
			if def.Tags == nil {
				def.Tags = map[string][]string{}
			}
			def.Tags[r.Action] = r.Tags
		}
	}
	return nil
}

// cloneTags copies tag limits, so that no caller shares them with memory.
func cloneTags(tags map[string][]string) map[string][]string {
	if len(tags) == 0 {
		return nil
	}
	out := make(map[string][]string, len(tags))
	for k, v := range tags {
		out[k] = slices.Clone(v)
	}
	return out
}

// mergeTagged adds the actions add, limited by addTags, to the actions
// and tag limits of a scope map: grants add up, so an action already
// granted on every tag stays so, and tags given for an action already
// limited widen its limit.
func mergeTagged(actions []string, tags map[string][]string, add []string, addTags map[string][]string) ([]string, map[string][]string, error) {
	addNorm, err := auth.NormalizeActions(add)
	if err != nil {
		return nil, nil, err
	}
	addLim, err := auth.NormalizeTags(addNorm, addTags)
	if err != nil {
		return nil, nil, err
	}
	rules := make([]auth.Rule, 0, len(actions)+len(addNorm))
	for _, a := range actions {
		rules = append(rules, auth.Rule{Action: a, Tags: tags[a]})
	}
	for _, a := range addNorm {
		rules = append(rules, auth.Rule{Action: a, Tags: addLim[a]})
	}
	return auth.MergeRules(rules)
}
