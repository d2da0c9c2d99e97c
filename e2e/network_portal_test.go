package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestPortalNetworkPages drives the network page and a token's allowed
// addresses in a browser, and checks both pages' looks as the portal's own
// test does (contrast in both schemes, nothing out of sight on a phone).
func TestPortalNetworkPages(t *testing.T) {
	srv := startRegistry(t)
	if srv.Kind != testutil.KindBerth {
		t.Skip("the portal is berth's own")
	}
	chrome := testutil.LookTool(t, "chromium", "chromium-browser", "google-chrome")
	requirePortal(t, srv)
	cli := newBerthCLI(t, srv)
	cli.createToken("ci-fenced", "--repository", "demo/app", "content/read")
	ctx := newChromium(t, chrome)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("%s: %v\npage:\n%s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	base := srv.URL
	run("sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), srv.Username),
		chromedp.SendKeys(chromedp.ID("password"), srv.Password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS(`nav.mainnav a[href="/network"]`)),
	)
	run("add rules",
		chromedp.Click(chromedp.CSS(`nav.mainnav a[href="/network"]`)),
		chromedp.WaitVisible(chromedp.ID("rules")),
		chromedp.SendKeys(chromedp.ID("rules"), "10.1.0.0/16\n192.0.2.7"),
		chromedp.Click(chromedp.ID("add-rule")),
		chromedp.WaitVisible(chromedp.CSS("#rules-list table")),
	)
	if list := text("#rules-list table"); !strings.Contains(list, "10.1.0.0/16") || !strings.Contains(list, "192.0.2.7/32") {
		t.Errorf("the rules table after adding: %q", list)
	}
	run("a bad rule is refused next to the field",
		chromedp.SendKeys(chromedp.ID("rules"), "10.0.0.0/99"),
		chromedp.Click(chromedp.ID("add-rule")),
		chromedp.WaitVisible(chromedp.CSS("#add-rules .field-error")),
	)
	if msg := text("#add-rules .field-error"); !strings.Contains(msg, "is not an IP address or CIDR range") {
		t.Errorf("a bad rule says %q", msg)
	}
	run("set the token's allowed addresses",
		chromedp.Navigate(base+"/tokens/ci-fenced"),
		chromedp.WaitVisible(chromedp.ID("addresses")),
		chromedp.SendKeys(chromedp.ID("addresses"), "127.0.0.2\n10.9.0.0/16"),
		chromedp.Click(chromedp.ID("save-addresses")),
		chromedp.WaitVisible(chromedp.CSS("#allowed-addresses code")),
	)
	if s := text("#allowed-addresses p"); !strings.Contains(s, "10.9.0.0/16") || !strings.Contains(s, "127.0.0.2/32") {
		t.Errorf("the token's allowed addresses: %q", s)
	}
	if out := cli.must("token", "show", "-n", "ci-fenced"); !strings.Contains(out, "Allowed addresses: 10.9.0.0/16, 127.0.0.2/32") {
		t.Errorf("berth token show after the portal's change:\n%s", out)
	}
	checkLooks(t, ctx, base, []string{"/network", "/tokens/ci-fenced"}, "nav.mainnav")
}
