package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// contrastScript lists every visible text on the page whose contrast with
// its effective background is below WCAG AA: 4.5:1, or 3:1 for large text
// (24px, or 18.66px bold). Colours are resolved by painting them on a
// canvas, so that every CSS colour syntax (color-mix, color()) counts;
// backgrounds are composited up the ancestors, and opacity multiplies.
// Disabled controls are exempt, as WCAG says.
const contrastScript = `(() => {
  const cv = document.createElement("canvas"); cv.width = cv.height = 1;
  const cx = cv.getContext("2d", {willReadFrequently: true});
  const rgba = c => { cx.clearRect(0, 0, 1, 1); cx.fillStyle = "rgba(0,0,0,0)"; cx.fillStyle = c; cx.fillRect(0, 0, 1, 1);
    const d = cx.getImageData(0, 0, 1, 1).data; return [d[0], d[1], d[2], d[3] / 255]; };
  const over = (top, bottom) => { const a = top[3] + bottom[3] * (1 - top[3]); if (a === 0) return [0, 0, 0, 0];
    return [0, 1, 2].map(i => (top[i] * top[3] + bottom[i] * bottom[3] * (1 - top[3])) / a).concat([a]); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = rgba(getComputedStyle(document.documentElement).backgroundColor);
    if (bg[3] < 1) bg = over(bg, [255, 255, 255, 1]);
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const opacity = el => { let o = 1; for (let e = el; e; e = e.parentElement) o *= parseFloat(getComputedStyle(e).opacity); return o; };
  const out = [];
  const seen = new Set();
  const els = document.querySelectorAll("body *");
  for (const el of els) {
    if (seen.has(el) || ["SCRIPT", "STYLE", "TEMPLATE", "OPTION", "NOSCRIPT"].includes(el.tagName)) continue;
    const control = ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName) && el.type !== "hidden" && el.type !== "checkbox" && el.type !== "radio";
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim() !== "");
    if (!own && !(control && (el.value || "").trim() !== "")) continue;
    if (el.disabled || el.closest("[hidden], template, .sr-only, [aria-hidden='true'] .sr-only")) continue;
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    if (r.width < 2 || r.height < 2 || st.visibility !== "visible" || st.display === "none") continue;
    seen.add(el);
    const bg = background(el);
    const fg0 = rgba(st.color);
    const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * opacity(el)], bg);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const need = (size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5;
    if (ratio + 0.005 < need) {
      const text = (control ? el.value : el.textContent).trim().replace(/\s+/g, " ").slice(0, 60);
      out.push(ratio.toFixed(2) + ":1 (need " + need + ") " + el.tagName.toLowerCase() + (el.className ? "." + String(el.className).trim().split(/\s+/).join(".") : "") + " " + JSON.stringify(text));
    }
  }
  return out;
})()`

// overflowScript lists what a phone user could not see: a page wider
// than the screen, a table or code box wider than its box without a
// visible "scroll sideways" hint, a text box whose text is cut off, and
// a table whose cells reach beyond the screen.
const overflowScript = `(() => {
  const out = [];
  const W = window.innerWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + String(el.className).trim().split(/\s+/).join(".") : "");
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !el.closest("[hidden], template"); };
  if (document.documentElement.scrollWidth > W + 1) out.push("the page is " + document.documentElement.scrollWidth + "px wide on a " + W + "px screen");
  document.querySelectorAll("main .table-wrap, main pre").forEach(el => {
    if (!shown(el) || el.scrollWidth <= el.clientWidth + 1) return;
    const hint = el.previousElementSibling;
    if (!hint || !hint.classList.contains("scroll-hint") || hint.hidden || hint.getBoundingClientRect().height === 0) {
      out.push(name(el) + " is " + el.scrollWidth + "px wide in " + el.clientWidth + "px, with no scroll hint");
    }
  });
  document.querySelectorAll("main textarea, main input").forEach(el => {
    if (!shown(el) || el.type === "hidden" || el.type === "checkbox" || el.type === "radio") return;
    if (el.tagName === "TEXTAREA" && el.scrollHeight > el.clientHeight + 2) out.push(name(el) + " cuts off its text (" + el.scrollHeight + "px in " + el.clientHeight + "px)");
    const r = el.getBoundingClientRect();
    if (r.right > W + 1) out.push(name(el) + " reaches " + Math.round(r.right) + "px");
  });
  document.querySelectorAll("main table td, main table th").forEach(el => {
    if (!shown(el)) return;
    const wrap = el.closest(".table-wrap");
    if (wrap && wrap.scrollWidth > wrap.clientWidth + 1) return; // scrolls, with the hint checked above
    const r = el.getBoundingClientRect();
    if (r.right > W + 1) out.push("a cell of " + name(el.closest("table")) + " reaches " + Math.round(r.right) + "px: " + JSON.stringify(el.textContent.trim().slice(0, 40)));
  });
  return out;
})()`

// spacingScript lists buttons that touch the card below them (less than
// 6px between the button's bottom and a card's top, the card not holding
// the button).
const spacingScript = `(() => {
  const out = [];
  const cards = Array.from(document.querySelectorAll("main .card")).map(c => [c, c.getBoundingClientRect()]);
  document.querySelectorAll("main .btn, main button").forEach(b => {
    const r = b.getBoundingClientRect();
    if (r.width === 0 || b.closest("[hidden], template, dialog")) return;
    for (const [c, cr] of cards) {
      if (c.contains(b) || cr.left >= r.right || cr.right <= r.left) continue;
      const gap = cr.top - r.bottom;
      if (gap >= 0 && gap < 6) out.push(JSON.stringify(b.textContent.trim()) + " is " + gap.toFixed(1) + "px above a card");
    }
  });
  return out;
})()`

// colorScheme emulates prefers-color-scheme.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// checkLooks loads each page in the light and the dark scheme at desktop
// width and checks every text's contrast, then at 390 px (a phone) checks
// that nothing is out of sight; it takes a screenshot of each page named
// in shots (page → name) in the scheme and width the name ends with.
func checkLooks(t *testing.T, ctx context.Context, base string, pages []string, ready string) {
	t.Helper()
	eval := func(script string) []string {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](script))
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		return v
	}
	load := func(p string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, chromedp.Navigate(base+p), chromedp.WaitVisible(chromedp.CSS(ready))); err != nil {
			t.Fatalf("load %s: %v", p, err)
		}
	}
	for _, scheme := range []string{"light", "dark"} {
		for _, width := range []int64{1280, 390} {
			if err := chromedp.Do(ctx, colorScheme(scheme), chromedp.EmulateViewport(width, 860)); err != nil {
				t.Fatal(err)
			}
			for _, p := range pages {
				load(p)
				if bad := eval(contrastScript); len(bad) > 0 {
					t.Errorf("%s, %s scheme, %d px: text below WCAG AA contrast:\n  %s", p, scheme, width, strings.Join(bad, "\n  "))
				}
				if bad := eval(spacingScript); len(bad) > 0 {
					t.Errorf("%s, %d px: buttons touch the next card:\n  %s", p, width, strings.Join(bad, "\n  "))
				}
				if width == 390 {
					if bad := eval(overflowScript); len(bad) > 0 {
						t.Errorf("%s, %s scheme, 390 px: out of sight on a phone:\n  %s", p, scheme, strings.Join(bad, "\n  "))
					}
				}
			}
		}
	}
	if err := chromedp.Do(ctx, colorScheme("light"), chromedp.EmulateViewport(1280, 860)); err != nil {
		t.Fatal(err)
	}
}
