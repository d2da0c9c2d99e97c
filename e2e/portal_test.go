package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestPortal drives the web portal in headless Chromium through the flow
// of the ACR portal's "Repository permissions" pages, and checks the result
// with a real client: sign in as the owner, create a scope map granting
// content/read and content/write on demo/*, create a token with it,
// generate password1 with an expiry, read the password and the docker
// login command off the page, log podman in with them, push demo/app
// (allowed) and other/app (denied), disable the token in the portal and
// see the next push refused.
//
// It takes screenshots of the main pages; with BERTH_UPDATE_SCREENSHOTS=1
// they are written to docs/screenshots/ (for the documentation), otherwise
// to a temporary directory.
func TestPortal(t *testing.T) {
	srv := startRegistry(t)
	if srv.Kind != testutil.KindBerth {
		t.Skip("the portal is berth's own")
	}
	chrome := testutil.LookTool(t, "chromium", "chromium-browser", "google-chrome")
	pm := testutil.NewPodman(t)
	requirePortal(t, srv)

	ctx := newChromium(t, chrome)
	shots := screenshotDir(t)
	fail := func(what string, err error) {
		t.Helper()
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
	// Each step gets a minute: a page that never shows what a step waits
	// for fails the step, not the whole run at the browser's deadline.
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			fail(what, err)
		}
	}
	// read runs one action that reads a string off the page.
	read := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		v, err := chromedp.Run(rctx, a)
		if err != nil {
			fail(what, err)
		}
		return v
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	// js runs a script in the page for its effect.
	js := func(script string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](script+"; true")(ctx, tg)
			return err
		})
	}
	base := srv.URL

	// Sign in as the owner.
	run("sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		shot("signin"),
		chromedp.SendKeys(chromedp.ID("username"), srv.Username),
		chromedp.SendKeys(chromedp.ID("password"), srv.Password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS("nav.mainnav")),
	)
	title := read("read the title", chromedp.Text(chromedp.CSS("main h1")))
	if title != "Overview" {
		t.Fatalf("after sign-in the page is %q, want Overview", title)
	}

	// A scope map: content/read + content/write on demo/*. First with a
	// second, invalid pattern, which the server refuses with its message
	// next to the field and stores nothing.
	// The form starts with one row; Write alone warns that pushes need
	// Read, and one click adds it; "+ Add" appends a row and focuses it.
	run("fill in the scope map",
		chromedp.Navigate(base+"/scope-maps/new"),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "demo-push"),
		chromedp.SendKeys(chromedp.ID("description"), "CI pushes to demo/*"),
		chromedp.SendKeys(chromedp.ID("pattern-0"), "demo/*"),
		chromedp.Click(chromedp.CSS(`input[name="action-0"][value="content/write"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr:has(#pattern-0) [data-read-warning]`)),
	)
	if rows := read("count the rows", chromedp.Evaluate[string](`String(document.querySelectorAll("table[data-grants] tbody tr").length)`)); rows != "1" {
		t.Errorf("the new scope map form starts with %s rows, want 1", rows)
	}
	warning := read("read the Write-without-Read warning", chromedp.Text(chromedp.CSS(`tr:has(#pattern-0) [data-read-warning]`)))
	if !strings.Contains(warning, "Write without Read: pushes will be refused") {
		t.Errorf("the Write-only row warns %q", warning)
	}
	run("add Read with one click",
		shot("scope-map-write-only"),
		chromedp.Click(chromedp.CSS(`tr:has(#pattern-0) [data-add-read]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`tr:has(#pattern-0) [data-read-warning]`)),
		chromedp.Click(chromedp.CSS(`[data-add-row]`)),
		chromedp.WaitVisible(chromedp.ID("pattern-1")),
	)
	if v := read("is Read checked", chromedp.Evaluate[string](`String(document.querySelector('input[name="action-0"][value="content/read"]').checked)`)); v != "true" {
		t.Errorf("Add Read left Read unchecked")
	}
	if v := read("where is the focus", chromedp.Evaluate[string](`document.activeElement.id + " " + String(document.querySelector("table[data-grants] tbody tr:last-child #pattern-1") !== null)`)); v != "pattern-1 true" {
		t.Errorf("after + Add, focus and last row: %q, want the new last row's pattern focused", v)
	}
	run("a second, invalid pattern",
		chromedp.SendKeys(chromedp.ID("pattern-1"), "a/*/b"),
		chromedp.Click(chromedp.CSS(`input[name="action-1"][value="content/read"]`)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"].btn-primary`)),
		chromedp.WaitVisible(chromedp.ID("pattern-1-error")),
	)
	fieldErr := read("read the pattern error", chromedp.Text(chromedp.ID("pattern-1-error")))
	if !strings.Contains(fieldErr, "a wildcard may only appear as a whole trailing path segment") {
		t.Errorf("message next to the bad pattern = %q", fieldErr)
	}
	run("fix the scope map and create it",
		js(`document.getElementById("pattern-1").value = ""`),
		chromedp.Click(chromedp.CSS(`input[name="action-1"][value="content/read"]`)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"].btn-primary`)),
		chromedp.WaitVisible(chromedp.CSS(".alert-ok")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="action-0"][value="content/write"]`)),
		shot("scope-map-editor"),
	)
	flash := read("read the confirmation", chromedp.Text(chromedp.CSS(".alert-ok")))
	if !strings.Contains(flash, "Scope map demo-push created") {
		t.Errorf("after creating the scope map: %q", flash)
	}

	// A token with that scope map, then password1 with an expiry.
	run("create the token",
		chromedp.Navigate(base+"/tokens/new"),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "ci-demo"),
		chromedp.SetValue(chromedp.ID("scopeMap"), "demo-push"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"].btn-primary`)),
		chromedp.WaitVisible(chromedp.ID("generate-password1")),
	)
	expiry := time.Now().UTC().AddDate(0, 0, 30).Format("2006-01-02")
	// The 30-day preset fills in the date, as ISO; None clears it.
	run("choose an expiry preset",
		chromedp.Click(chromedp.CSS(`[data-expiry-target="expiry-password1"][data-expiry-days=""]`)),
		chromedp.Click(chromedp.CSS(`[data-expiry-target="expiry-password1"][data-expiry-days="30"]`)),
	)
	if v := read("read the expiry", chromedp.Value(chromedp.ID("expiry-password1"))); v != expiry {
		t.Errorf("after the 30-day preset the expiry is %q, want %q", v, expiry)
	}
	run("generate password1",
		chromedp.Click(chromedp.ID("generate-password1")),
		chromedp.WaitVisible(chromedp.ID("pw-password1")),
	)
	password := read("read the password", chromedp.Value(chromedp.ID("pw-password1")))
	command := read("read the login command", chromedp.Value(chromedp.ID("cmd-password1")))
	stdinCmd := read("read the --password-stdin command", chromedp.Value(chromedp.ID("cmd-stdin-password1")))
	podmanCmd := read("read the podman command", chromedp.Value(chromedp.ID("cmd-podman-password1")))
	if want := fmt.Sprintf("echo '%s' | docker login -u ci-demo --password-stdin %s", password, srv.Host); stdinCmd != want {
		t.Errorf("--password-stdin command = %q, want %q", stdinCmd, want)
	}
	if want := fmt.Sprintf("echo '%s' | podman login -u ci-demo --password-stdin --tls-verify=false %s", password, srv.Host); podmanCmd != want {
		t.Errorf("podman command = %q, want %q (the registry is plain HTTP)", podmanCmd, want)
	}
	note := read("read the warning", chromedp.Text(chromedp.CSS(".secret-warning")))
	if !strings.Contains(note, "it will not be shown again") {
		t.Errorf("the page does not say the password is shown once: %q", note)
	}
	if want := fmt.Sprintf("docker login -u ci-demo -p %s %s", password, srv.Host); command != want || len(password) < 40 {
		t.Fatalf("login command = %q, want %q", command, want)
	}
	run("copy the command",
		chromedp.Click(chromedp.CSS(`[data-copy="cmd-password1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-copy="cmd-password1"].copied`)),
	)
	copied := read("read the copy button", chromedp.Text(chromedp.CSS(`[data-copy="cmd-password1"]`)))
	if copied != "Copied" {
		t.Errorf("copy button says %q after a click", copied)
	}
	// The screenshot shows a placeholder, not a live secret.
	const placeholder = "EXAMPLE-shown-once-not-a-real-password-0000"
	run("screenshot the password",
		js(fmt.Sprintf(`document.querySelectorAll("[data-secret]").forEach(e => e.value = %q);
			document.querySelectorAll("[data-login-command]").forEach(e => e.value = e.value.split(%q).join(%q))`,
			placeholder, password, placeholder)),
		shot("token-password"),
	)

	// Never shown again.
	run("reload the token page",
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.ID("generate-password1")),
	)
	html := read("read the token page", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(html, password) {
		t.Errorf("the token page shows the password again")
	}
	if !strings.Contains(html, expiry) {
		t.Errorf("the token page does not show password1's expiry %s", expiry)
	}

	// A real client with what the page showed: podman's own command,
	// the password on its standard input.
	pf := strings.Fields(strings.SplitN(podmanCmd, " | ", 2)[1])
	if out, err := pm.RunInput(password+"\n", pf[1:]...); err != nil {
		t.Fatalf("podman login with the portal's podman command %v: %v\n%s", pf, err, out)
	}
	img := testutil.RandomImage(t, 1, 64<<10)
	dir := testutil.WriteOCILayout(t, img, "v1")
	id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+dir+":v1"))
	push := func(ref string) (string, error) {
		pm.MustRun("tag", id, srv.Host+"/"+ref)
		return pm.Run("push", "--tls-verify=false", srv.Host+"/"+ref)
	}
	if out, err := push("demo/app:v1"); err != nil {
		t.Fatalf("push demo/app with the token: %v\n%s", err, out)
	}
	if out, err := push("other/app:v1"); err == nil {
		t.Fatalf("push other/app with a token scoped to demo/* succeeded:\n%s", out)
	} else if !deniedOutput(out) {
		t.Errorf("push other/app failed, but not as denied: %s", out)
	}

	// Pages with data in them.
	run("screenshot the repositories",
		chromedp.Navigate(base+"/repositories?sort=lastPushed"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/repositories/demo/app"]`)),
		shot("repositories"),
		chromedp.Navigate(base+"/repositories/demo/app"),
		chromedp.WaitVisible(chromedp.CSS("span.tag")),
		shot("repository"),
	)
	run("screenshot the tokens",
		chromedp.Navigate(base+"/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/tokens/ci-demo"]`)),
		shot("tokens"),
		chromedp.Navigate(base+"/access-keys"),
		chromedp.WaitVisible(chromedp.CSS(".note")),
		shot("access-keys"),
	)

	// Disable the token: the next push is refused.
	run("disable the token",
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.ID("disable-token")),
		chromedp.Click(chromedp.ID("disable-token")),
		chromedp.WaitVisible(chromedp.ID("enable-token")),
	)
	if out, err := push("demo/app:v2"); err == nil {
		t.Fatalf("push with a disabled token succeeded:\n%s", out)
	} else if !deniedOutput(out) {
		t.Errorf("push with a disabled token failed, but not as refused: %s", out)
	}

	// Deleting a password asks in the portal's own dialog; cancelling
	// keeps the password.
	run("ask before deleting password1",
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.ID("enable-token")),
		chromedp.Click(chromedp.CSS(`button[data-confirm^="Delete password1"]`)),
		chromedp.WaitVisible(chromedp.CSS("dialog.dialog[open]")),
		shot("confirm-dialog"),
	)
	question := read("read the dialog", chromedp.Text(chromedp.CSS("dialog.dialog[open] .dialog-question")))
	if !strings.Contains(question, "Delete password1 of ci-demo?") {
		t.Errorf("the dialog asks %q", question)
	}
	run("cancel the dialog",
		chromedp.Click(chromedp.CSS("dialog.dialog[open] [data-dialog-cancel]")),
		chromedp.WaitNotPresent(chromedp.CSS("dialog.dialog[open]")),
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.CSS(`button[data-confirm^="Delete password1"]`)),
	)

	// The last owner cannot be demoted: the form says so, in place.
	run("demote the last owner",
		chromedp.Navigate(base+"/users/"+srv.Username),
		chromedp.WaitVisible(chromedp.ID("role")),
		chromedp.SetValue(chromedp.ID("role"), "reader"),
		chromedp.Submit(chromedp.ID("role")),
		chromedp.WaitVisible(chromedp.CSS(".inline-form .field-error")),
	)
	if msg := read("read the refusal", chromedp.Text(chromedp.CSS(".inline-form .field-error"))); !strings.Contains(msg, "is the only enabled owner, so they cannot be given another role") {
		t.Errorf("demoting the last owner says %q", msg)
	}
	if h1 := read("read the heading", chromedp.Text(chromedp.CSS("main h1"))); strings.Contains(h1, "Not allowed") {
		t.Errorf("demoting the last owner ends on %q", h1)
	}

	run("screenshot the audit log",
		chromedp.Navigate(base+"/audit"),
		chromedp.WaitVisible(chromedp.CSS("table.audit")),
		shot("audit"),
	)
	html = read("read the audit log", chromedp.OuterHTML(chromedp.CSS("table.audit")))
	for _, want := range []string{"ci-demo", "token ci-demo", "scope map demo-push"} {
		if !strings.Contains(html, want) {
			t.Errorf("the audit log lacks %q", want)
		}
	}

	// Every page in both schemes (portalPages, which names every page the
	// portal serves): every text meets WCAG AA; at 390 px nothing is out
	// of sight. First each section gets something to list: ci-demo limits,
	// allowed addresses and a federated credential, a user with a role
	// assignment, a signature policy and a network rule.
	fillLooksFixture(t, srv)
	checkLooks(t, ctx, base, portalPagePaths(srv.Username), "nav.mainnav")

	// The push refused to ci-demo left a trace: the denials of other/app,
	// with what was asked and what the token lacks, and an export.
	run("find the refused push",
		chromedp.Navigate(base+"/audit"),
		chromedp.WaitVisible(chromedp.ID("repository")),
		chromedp.SendKeys(chromedp.ID("repository"), "other/app"),
		chromedp.SetValue(chromedp.ID("result"), "denied"),
		chromedp.Submit(chromedp.ID("repository")),
		chromedp.WaitVisible(chromedp.ID("export-csv")),
		shot("audit-denied"),
	)
	html = read("read the denials", chromedp.OuterHTML(chromedp.CSS("main")))
	if !strings.Contains(html, "lacks <code>content/read,content/write</code>") || !strings.Contains(html, ">ci-demo<") || strings.Contains(html, "demo/app:v1") {
		t.Errorf("the denied list for other/app does not show ci-demo's refused push (or shows other events)")
	}
	if href := read("read the export link", chromedp.Evaluate[string](`document.getElementById("export-csv").getAttribute("href")`)); href != "/audit/export?format=csv&repository=other%2Fapp&result=denied" {
		t.Errorf("CSV export link %q", href)
	}
	csvText := read("export CSV", chromedp.Evaluate[string](`fetch(document.getElementById("export-csv").href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(csvText, "id,time,") || !strings.Contains(csvText, ",access,failure,ci-demo,token,") || !strings.Contains(csvText, "content/write") {
		t.Errorf("the CSV export:\n%s", csvText)
	}

	// A repository's page copies the pull command by digest; its
	// manifest's page offers to delete it (cancelled here).
	run("copy the pull command by digest",
		chromedp.Navigate(base+"/repositories/demo/app"),
		chromedp.WaitVisible(chromedp.CSS(`[data-copy="pd-v1"]`)),
		chromedp.Click(chromedp.CSS(`[data-copy="pd-v1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-copy="pd-v1"].copied`)),
	)
	if v := read("read the pull command", chromedp.TextContent(chromedp.ID("pd-v1"))); !strings.HasPrefix(v, "docker pull "+srv.Host+"/demo/app@sha256:") {
		t.Errorf("pull by digest: %q", v)
	}
	run("offer to delete the manifest",
		chromedp.Click(chromedp.CSS(`td a.mono[href*="/-/manifests/"]`)),
		chromedp.WaitVisible(chromedp.ID("delete-manifest")),
		chromedp.Click(chromedp.ID("delete-manifest")),
		chromedp.WaitVisible(chromedp.CSS("dialog.dialog[open]")),
		chromedp.Click(chromedp.CSS("dialog.dialog[open] [data-dialog-cancel]")),
		chromedp.WaitNotPresent(chromedp.CSS("dialog.dialog[open]")),
	)

	// The scope map editor previews what each pattern matches, and
	// suggests existing repositories as a pattern is typed.
	run("preview the patterns",
		chromedp.Navigate(base+"/scope-maps/demo-push"),
		chromedp.WaitVisible(chromedp.CSS(`tr:has(#pattern-0) .pattern-preview`)),
		chromedp.Click(chromedp.CSS(`[data-add-row]`)),
		chromedp.WaitVisible(chromedp.ID("pattern-1")),
		chromedp.SendKeys(chromedp.ID("pattern-1"), "dem"),
		chromedp.WaitReady(chromedp.CSS(`#repo-suggestions option[value="demo/app"]`)),
		shot("scope-map-preview"),
	)
	if v := read("read the preview", chromedp.Text(chromedp.CSS(`tr:has(#pattern-0) .pattern-preview`))); v != "Matches 1 repository: demo/app." {
		t.Errorf("the preview of demo/* says %q", v)
	}

	// The repository list: its count, and demo/app's last push and size.
	run("the repository list", chromedp.Navigate(base+"/repositories"), chromedp.WaitVisible(chromedp.ID("repo-count")))
	if n := read("read the repository count", chromedp.Text(chromedp.ID("repo-count"))); n != "1 repository" {
		t.Errorf("the repository list says %q", n)
	}
	// The overview counts the refusals and links to them.
	run("the overview",
		chromedp.Navigate(base+"/overview"),
		chromedp.WaitVisible(chromedp.ID("tile-denials")),
		shot("overview"),
	)
	if v := read("read the denials", chromedp.Text(chromedp.CSS("#tile-denials .tile-num"))); v == "0" || v == "" {
		t.Errorf("the overview counts %q refusals after the refused push", v)
	}
	run("open the refusals from the overview",
		chromedp.Click(chromedp.ID("tile-denials")),
		chromedp.WaitVisible(chromedp.ID("export-csv")),
	)
	if html := read("read the refusals", chromedp.OuterHTML(chromedp.CSS("main"))); !strings.Contains(html, "other/app") {
		t.Errorf("the overview's refusals link does not list other/app's")
	}

	// The token's own activity shows the refusal, and the token list
	// filters: ci-demo was used, so "never used" leaves it out.
	run("the token's activity",
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.ID("activity")),
	)
	if act := read("read the activity", chromedp.Text(chromedp.ID("activity"))); !strings.Contains(act, "other/app") || !strings.Contains(act, "denied") || !strings.Contains(act, "push") {
		t.Errorf("the token's activity lacks the refused push:\n%s", act)
	}
	run("filter the tokens",
		chromedp.Navigate(base+"/tokens"),
		chromedp.WaitVisible(chromedp.ID("tscope")),
		chromedp.SetValue(chromedp.ID("tscope"), "demo-push"),
		chromedp.Submit(chromedp.ID("tscope")),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/tokens/ci-demo"]`)),
		shot("tokens-filtered"),
		chromedp.Click(chromedp.CSS(`input[name="neverUsed"]`)),
		chromedp.Submit(chromedp.ID("tscope")),
		chromedp.WaitVisible(chromedp.CSS(".card.empty")),
	)
	if n := read("read the count", chromedp.Text(chromedp.ID("token-count"))); n != "0 of 1 tokens match." {
		t.Errorf("never-used filter: %q", n)
	}

	// A phone-width window and the dark scheme.
	run("phone width",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(base+"/scope-maps/demo-push"),
		chromedp.WaitVisible(chromedp.ID("pattern-0")),
		shot("scope-map-phone"),
	)
	if off := read("the editor's columns on a phone", chromedp.Evaluate[string](`Array.from(document.querySelectorAll('tr:has(#pattern-0) input[type="checkbox"]')).filter(c => { const r = c.getBoundingClientRect(); return r.width === 0 || r.right > innerWidth; }).map(c => c.value).join(" ")`)); off != "" {
		t.Errorf("at 390 px the scope map editor hides the columns %s", off)
	}
	run("phone width, token",
		chromedp.Navigate(base+"/tokens/ci-demo"),
		chromedp.WaitVisible(chromedp.ID("enable-token")),
		shot("token-phone"),
		chromedp.Click(chromedp.ID("generate-password2")),
		chromedp.WaitVisible(chromedp.ID("cmd-password2")),
	)
	// The docker login box shows the whole command on a phone.
	if bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](overflowScript)); err != nil || len(bad) > 0 {
		t.Errorf("the new password's card at 390 px: %v %v", bad, err)
	}
	if off := read("the permission table on a phone", chromedp.Evaluate[string](`Array.from(document.querySelectorAll(".grants-view tbody td")).filter(c => { const r = c.getBoundingClientRect(); return r.width === 0 || r.right > innerWidth; }).length + ""`)); off != "0" {
		t.Errorf("at 390 px %s cells of the token's permission table are out of sight", off)
	}
	run("dark scheme",
		chromedp.EmulateViewport(1280, 860),
		colorScheme("dark"),
		chromedp.Navigate(base+"/scope-maps"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/scope-maps/demo-push"]`)),
		shot("scope-maps-dark"),
	)

	// Sign out: the portal asks for a password again.
	run("sign out",
		chromedp.EmulateViewport(1280, 860),
		chromedp.Click(chromedp.CSS(".signout button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.Navigate(base+"/tokens"),
		chromedp.WaitVisible(chromedp.ID("username")),
	)
	var signedOut []string
	for _, p := range portalSignedOutPages {
		signedOut = append(signedOut, p.path)
	}
	checkLooks(t, ctx, base, signedOut, "#username")
}

// deniedOutput reports whether a client's error output says it was
// refused (401 or 403), not that something else went wrong.
func deniedOutput(out string) bool {
	o := strings.ToLower(out)
	for _, s := range []string{"denied", "unauthorized", "authentication required", "403", "401"} {
		if strings.Contains(o, s) {
			return true
		}
	}
	return false
}

// requirePortal fails the test early, with a clear message, when the
// server does not serve the portal.
func requirePortal(t *testing.T, srv *testutil.Server) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `action="/signin"`) {
		t.Fatalf("GET /signin answered %d without the sign-in form: the server does not serve the portal (internal/ui) at /", resp.StatusCode)
	}
}

// newChromium starts headless Chromium with a fresh profile and nothing
// that talks to the network by itself, and returns a browser context that
// ends with the test.
func newChromium(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,InterestFeedContentSuggestions"),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 860),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp's own logging is off: it may log from its goroutines after
	// the test ended, and every failure reaches the test through Run.
	quiet := func(string, ...any) {}
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(quiet), chromedp.WithErrorf(quiet))
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	// Start the browser now, so that a broken Chromium fails here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 860)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshotDir is docs/screenshots under BERTH_UPDATE_SCREENSHOTS=1, and a
// temporary directory otherwise.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("BERTH_UPDATE_SCREENSHOTS") != "1" {
		return t.TempDir()
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
