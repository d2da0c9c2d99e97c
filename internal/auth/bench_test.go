package auth

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// decideFixture is a registry the size of ACR's Premium limits: 50,000
// tokens, each with its own 500-pattern scope map.
type decideFixture struct {
	ids   []Identity
	repos []string // every repository name in use
	// probes are (token, repository) pairs drawn ahead of time so the
	// benchmark loop measures Decide, not the random number generator.
	probes []probe
}

type probe struct {
	id   int
	repo string
	tag  string
}

// buildDecideFixture makes a realistic mix. Repositories live under 500
// teams, two or three levels deep ("team042/app17", "team042/svc/app3").
// Each scope map names 500 patterns: mostly exact repositories of a few
// teams it works with, some "teamNNN/*" and "teamNNN/svc/*" prefixes, and in
// one map out of fifty "*" for read. Each pattern gets one to three actions.
// Half the probes ask about a repository the token has a rule for, half
// about a random repository.
//
// With tagPatterns > 0 every rule is limited to that many tag patterns,
// drawn from 64 sets (teams share tag conventions), and every probe asks
// about a tag as well.
func buildDecideFixture(tokens, patterns, tagPatterns int) *decideFixture {
	r := rand.New(rand.NewPCG(1, 2))
	const teams, apps = 500, 40
	f := &decideFixture{}
	for t := range teams {
		for a := range apps {
			f.repos = append(f.repos, fmt.Sprintf("team%03d/app%d", t, a))
			if a%4 == 0 {
				f.repos = append(f.repos, fmt.Sprintf("team%03d/svc/app%d", t, a), fmt.Sprintf("team%03d/svc/deep/app%d", t, a))
			}
		}
	}
	var tagSets [][]string
	if tagPatterns > 0 {
		for i := range 64 {
			var set []string
			for j := range tagPatterns {
				switch j % 3 {
				case 0:
					set = append(set, fmt.Sprintf("v%d.*", (i+j)%20))
				case 1:
					set = append(set, fmt.Sprintf("*-rc%d*", (i*j)%7))
				default:
					set = append(set, fmt.Sprintf("team%d-%d-*", i, j))
				}
			}
			tagSets = append(tagSets, set)
		}
	}
	actionSets := []Actions{ContentRead, ContentRead | ContentWrite, ContentRead | MetadataRead, ContentRead | ContentWrite | MetadataRead, ContentDelete}
	ruleRepos := make([][]string, tokens)
	f.ids = make([]Identity, tokens)
	for i := range tokens {
		m := ScopeMap{Name: fmt.Sprintf("map-%05d", i), Type: UserDefined}
		seen := map[string]bool{}
		add := func(pattern string) {
			if seen[pattern] {
				return
			}
			seen[pattern] = true
			for _, name := range actionSets[r.IntN(len(actionSets))].ScopeMapNames() {
				a := "repositories/" + pattern + "/" + name
				m.Actions = append(m.Actions, a)
				if tagSets != nil {
					if m.Tags == nil {
						m.Tags = map[string][]string{}
					}
					m.Tags[a] = tagSets[r.IntN(len(tagSets))]
				}
			}
		}
		if i%50 == 0 {
			add("*")
		}
		for j := 0; len(seen) < patterns; j++ {
			team := r.IntN(teams)
			switch {
			case j%10 == 0:
				add(fmt.Sprintf("team%03d/*", team))
			case j%10 == 1:
				add(fmt.Sprintf("team%03d/svc/*", team))
			default:
				repo := f.repos[r.IntN(len(f.repos))]
				add(repo)
				if len(ruleRepos[i]) < 16 { // enough to draw probes from
					ruleRepos[i] = append(ruleRepos[i], repo)
				}
			}
		}
		if i == 0 {
			if err := m.Validate(); err != nil {
				panic(err)
			}
		}
		f.ids[i] = Identity{Kind: KindToken, Name: m.Name, Policy: MustCompile(m)}
	}
	f.probes = make([]probe, 1<<20)
	for i := range f.probes {
		id := r.IntN(tokens)
		repo := f.repos[r.IntN(len(f.repos))]
		if i%2 == 0 && len(ruleRepos[id]) > 0 {
			repo = ruleRepos[id][r.IntN(len(ruleRepos[id]))]
		}
		tag := ""
		if tagPatterns > 0 {
			tag = []string{"v3.1.4", "v1-rc2", "team7-1-x", "latest"}[r.IntN(4)]
		}
		f.probes[i] = probe{id, repo, tag}
	}
	return f
}

// BenchmarkDecide measures the decision for a random token and repository
// among 50,000 tokens with 500-pattern scope maps. "random" draws from all
// tokens, so nearly every probe misses the CPU caches (the policies take
// about 2 GiB): the worst case. "hot-64" draws from 64 tokens, closer to a
// registry where a few CI tokens do most of the work.
func BenchmarkDecide(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := buildDecideFixture(50_000, MaxScopeMapPatterns, 0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapMiB := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)

	run := func(b *testing.B, probes []probe) {
		want := ContentRead | ContentWrite
		allowed, i := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			p := probes[i%len(probes)]
			if _, ok := Decide(f.ids[p.id], p.repo, want); ok {
				allowed++
			}
			i++
		}
		b.ReportMetric(float64(allowed)/float64(i), "allowed-ratio")
		b.ReportMetric(heapMiB, "fixture-MiB")
	}
	b.Run("random", func(b *testing.B) { run(b, f.probes) })
	var hot []probe
	for _, p := range f.probes {
		if p.id < 64 {
			hot = append(hot, p)
		}
	}
	b.Run("hot-64", func(b *testing.B) { run(b, hot) })
}

// BenchmarkDecideTags is BenchmarkDecide with tag rules: every one of the
// 500 rules of each of the 50,000 scope maps is limited to 10 tag patterns.
// "repo" is the repository-level decision every request takes (blobs,
// pushes by digest); "tag" the decision on one tag (PermitsTag), which
// manifest and tag requests take as well.
func BenchmarkDecideTags(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := buildDecideFixture(50_000, MaxScopeMapPatterns, 10)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapMiB := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	run := func(b *testing.B, probes []probe, decide func(p probe) bool) {
		allowed, i := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			if decide(probes[i%len(probes)]) {
				allowed++
			}
			i++
		}
		b.ReportMetric(float64(allowed)/float64(i), "allowed-ratio")
		b.ReportMetric(heapMiB, "fixture-MiB")
	}
	repo := func(p probe) bool { _, ok := Decide(f.ids[p.id], p.repo, ContentRead|ContentWrite); return ok }
	tag := func(p probe) bool { return PermitsTag(f.ids[p.id], p.repo, OpPush, p.tag) }
	var hot []probe
	for _, p := range f.probes {
		if p.id < 64 {
			hot = append(hot, p)
		}
	}
	b.Run("repo/random", func(b *testing.B) { run(b, f.probes, repo) })
	b.Run("tag/random", func(b *testing.B) { run(b, f.probes, tag) })
	b.Run("tag/hot-64", func(b *testing.B) { run(b, hot, tag) })
}

func BenchmarkVerifyJWT(b *testing.B) {
	f := newJWTFixture(b)
	tok, _, err := f.signer.IssueAccess(f.sub, []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.verifier.VerifyAccess(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueJWT(b *testing.B) {
	f := newJWTFixture(b)
	access := []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.signer.IssueAccess(f.sub, access); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPassword(b *testing.B) {
	pw := GeneratePassword()
	h1, h2 := HashSecret(pw), HashSecret(GeneratePassword())
	b.Run("token-two-slots", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := MatchSecret(pw, h1, h2); !ok {
				b.Fatal("no match")
			}
		}
	})
	b.Run("argon2id-user", func(b *testing.B) {
		h := HashUserPassword("correct horse battery staple")
		b.ReportAllocs()
		for b.Loop() {
			if !VerifyUserPassword(h, "correct horse battery staple") {
				b.Fatal("no match")
			}
		}
	})
}

func BenchmarkParseScopes(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseScopes("repository:team/app:pull,push repository:team/base:pull")
	}
}
