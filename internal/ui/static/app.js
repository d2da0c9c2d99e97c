// berth portal: small conveniences on top of pages that work without
// JavaScript. Copy buttons, confirmation dialogs, rows of the scope map
// editor, the new-token mode switch and quick checks of repository
// patterns. The server checks everything again.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Copy buttons: <button data-copy="ID"> copies the value of #ID.
  function copy(target, button) {
    var text = target.value !== undefined ? target.value : target.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () {
        button.textContent = label;
        button.classList.remove("copied");
      }, 1600);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(target, done); });
    } else {
      fallback(target, done);
    }
  }
  function fallback(target, done) {
    var tmp = null;
    if (typeof target.select !== "function") {
      // A code or text element: copy through a scratch text box.
      tmp = document.createElement("textarea");
      tmp.value = target.textContent;
      tmp.setAttribute("readonly", "");
      tmp.className = "sr-only";
      document.body.appendChild(tmp);
      target = tmp;
    }
    target.focus();
    target.select();
    try {
      if (document.execCommand("copy")) done();
    } catch (e) { /* the text stays selected for the user to copy */ }
    if (tmp) tmp.remove();
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-copy]");
    if (!b) return;
    var t = document.getElementById(b.getAttribute("data-copy"));
    if (t) copy(t, b);
  });

  // Confirmation: a submit button (or form) with data-confirm="question"
  // asks in the portal's own dialog (not the browser's), whose confirm
  // button repeats the label of the button that was pressed.
  var dialog = null;
  function confirmDialog(question, label, danger, then) {
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.className = "dialog";
      dialog.setAttribute("aria-labelledby", "dialog-question");
      dialog.innerHTML = '<form method="dialog"><p id="dialog-question" class="dialog-question"></p>' +
        '<div class="actions dialog-actions"><button class="btn" value="cancel" data-dialog-cancel>Cancel</button>' +
        '<button class="btn btn-primary" value="ok" data-dialog-ok></button></div></form>';
      document.body.appendChild(dialog);
    }
    dialog.querySelector(".dialog-question").textContent = question;
    var ok = dialog.querySelector("[data-dialog-ok]");
    ok.textContent = label || "Continue";
    ok.className = "btn " + (danger ? "btn-danger" : "btn-primary");
    dialog.returnValue = "";
    dialog.onclose = function () { then(dialog.returnValue === "ok"); };
    dialog.showModal();
    dialog.querySelector("[data-dialog-cancel]").focus();
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.getAttribute("method") === "dialog") return;
    if (form.hasAttribute("data-confirmed")) {
      form.removeAttribute("data-confirmed");
      return;
    }
    var sub = ev.submitter;
    var b = sub && sub.hasAttribute("data-confirm") ? sub : form;
    var q = b.getAttribute && b.getAttribute("data-confirm");
    if (!q) return;
    ev.preventDefault();
    var danger = sub && (sub.classList.contains("btn-danger") || sub.classList.contains("danger-text"));
    confirmDialog(q, sub ? sub.textContent.trim() : "", danger, function (yes) {
      if (!yes) {
        if (sub) sub.focus();
        return;
      }
      form.setAttribute("data-confirmed", "");
      if (form.requestSubmit) form.requestSubmit(sub || undefined);
      else form.submit();
    });
  });

  // Expiry presets: fill the date field with today + N days (UTC), or
  // clear it for no expiry.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-expiry-target]");
    if (!b) return;
    var field = document.getElementById(b.getAttribute("data-expiry-target"));
    if (!field) return;
    var days = b.getAttribute("data-expiry-days");
    if (days === "") {
      field.value = "";
    } else {
      var d = new Date(Date.now() + parseInt(days, 10) * 86400000);
      field.value = d.toISOString().slice(0, 10);
    }
    field.focus();
  });

  // Narrow screens: every table sits in a scroll box, and a box whose
  // content is wider than it says so above it. Tables marked table-stack
  // fold into one block per row instead; their cells are labelled with
  // their column's header.
  function labelCells(table) {
    var heads = table.querySelectorAll("thead th");
    if (!heads.length) return;
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) {
        var th = heads[i];
        if (!th || td.hasAttribute("data-label")) return;
        var only = th.querySelector(".sr-only");
        if (only && only.textContent.trim() === th.textContent.trim()) return;
        var label = (th.childNodes[0] && th.childNodes[0].textContent || th.textContent).trim();
        td.setAttribute("data-label", label);
      });
    });
  }
  function fitBoxes() {
    document.querySelectorAll("main table").forEach(function (t) {
      if (t.classList.contains("table-stack")) labelCells(t);
      if (t.parentNode.classList && t.parentNode.classList.contains("table-wrap")) return;
      var w = document.createElement("div");
      w.className = "table-wrap";
      t.parentNode.insertBefore(w, t);
      w.appendChild(t);
    });
    document.querySelectorAll("main .table-wrap, main pre.code").forEach(function (el) {
      var over = el.scrollWidth > el.clientWidth + 1;
      var hint = el.previousElementSibling;
      if (!hint || !hint.classList.contains("scroll-hint")) {
        if (!over) return;
        hint = document.createElement("p");
        hint.className = "scroll-hint";
        hint.setAttribute("aria-hidden", "true");
        hint.textContent = "Scroll sideways to see all of it →";
        el.parentNode.insertBefore(hint, el);
      }
      hint.hidden = !over;
      el.classList.toggle("scrolls", over);
    });
  }
  var fitTimer = 0;
  window.addEventListener("resize", function () {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(fitBoxes, 100);
  });

  // Scope map editor: Write without Read cannot push (clients read before
  // they write), so such a row says so and offers to add Read.
  function checkReadWrite(row) {
    var w = row.querySelector('input[type="checkbox"][value="content/write"]');
    var r = row.querySelector('input[type="checkbox"][value="content/read"]');
    var warn = row.querySelector("[data-read-warning]");
    if (!w || !r || !warn) return;
    warn.hidden = !(w.checked && !r.checked);
  }
  document.addEventListener("change", function (ev) {
    var row = ev.target.closest && ev.target.closest("table[data-grants] tr");
    if (row) checkReadWrite(row);
  });
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-add-read]");
    if (!b) return;
    var row = b.closest("tr");
    var r = row.querySelector('input[type="checkbox"][value="content/read"]');
    if (r) {
      r.checked = true;
      checkReadWrite(row);
      r.focus();
    }
  });

  // Scope map editor: add and remove rows.
  function nextIndex(table) {
    var max = -1;
    table.querySelectorAll("input[data-pattern]").forEach(function (el) {
      var n = parseInt(el.name.replace("pattern-", ""), 10);
      if (n > max) max = n;
    });
    return max + 1;
  }
  document.addEventListener("click", function (ev) {
    var add = ev.target.closest("[data-add-row]");
    if (add) {
      var scope = add.closest("section, .mode-panel") || document;
      var table = scope.querySelector("table[data-grants]");
      var tpl = scope.querySelector("template[data-row-template]");
      if (!table || !tpl) return;
      var i = nextIndex(table);
      var html = tpl.innerHTML.replace(/__i__/g, String(i));
      var body = table.querySelector("tbody");
      body.insertAdjacentHTML("beforeend", html);
      var input = body.lastElementChild.querySelector("input[data-pattern]");
      labelCells(table);
      if (input) input.focus();
      return;
    }
    var rm = ev.target.closest("[data-remove-row]");
    if (rm) {
      var row = rm.closest("tr");
      var tbody = row.parentNode;
      var prev = row.previousElementSibling || row.nextElementSibling;
      row.remove();
      var focus = prev && prev.querySelector("input[data-pattern]");
      if (focus) focus.focus();
      else if (tbody.children.length === 0) {
        var a = tbody.closest("section, .mode-panel").querySelector("[data-add-row]");
        if (a) a.focus();
      }
    }
  });

  // Quick pattern check, mirroring the server's rules: a repository name,
  // a name followed by "/*", or "*".
  var segment = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
  function checkPattern(p) {
    if (p === "" || p === "*") return "";
    if (/[A-Z]/.test(p)) return "Use lower case: repository names are lower case.";
    var name = p;
    if (p.slice(-2) === "/*") name = p.slice(0, -2);
    if (name.indexOf("*") >= 0) {
      return "A wildcard may only be a whole last segment, as in \"team/*\", or \"*\" alone.";
    }
    var parts = name.split("/");
    for (var i = 0; i < parts.length; i++) {
      if (parts[i] === "") return "No empty segments: no leading, trailing or doubled \"/\".";
      if (!segment.test(parts[i])) {
        return "\"" + parts[i] + "\" is not a valid name segment: use lower-case letters and digits, separated by \".\", \"_\", \"__\" or \"-\".";
      }
    }
    return "";
  }
  document.addEventListener("input", function (ev) {
    var el = ev.target;
    if (!el.matches || !el.matches("input[data-pattern]")) return;
    var msg = checkPattern(el.value.trim());
    var hint = el.parentNode.querySelector(".pattern-hint");
    if (hint) {
      hint.textContent = msg;
      hint.hidden = msg === "";
    }
    if (msg) el.setAttribute("aria-invalid", "true");
    else el.removeAttribute("aria-invalid");
  });

  // Repository picker and live preview: as a pattern is typed, existing
  // repositories are suggested, and the row says how many repositories
  // the pattern matches, with the first few names. The server counts
  // only the repositories the user may see.
  var previewTimers = new WeakMap();
  function getJSON(url, then) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json().then(function (v) { then(r.ok, v); }); })
      .catch(function () { /* a preview is a convenience: no message */ });
  }
  function preview(el) {
    var v = el.value.trim();
    var out = el.parentNode.querySelector(".pattern-preview");
    var list = document.getElementById("repo-suggestions");
    if (!out) return;
    if (v === "" || checkPattern(v) !== "") {
      out.hidden = true;
      return;
    }
    if (list) {
      getJSON("/repository-suggestions?q=" + encodeURIComponent(v), function (ok, d) {
        if (!ok || !d.names) return;
        list.textContent = "";
        d.names.forEach(function (n) {
          var o = document.createElement("option");
          o.value = n;
          list.appendChild(o);
        });
      });
    }
    getJSON("/repository-matches?pattern=" + encodeURIComponent(v), function (ok, d) {
      if (el.value.trim() !== v) return;
      if (!ok) {
        out.hidden = true;
        return;
      }
      var n = d.count + (d.partial ? "+" : "");
      var text = d.count === 0 ? "Matches no repository yet (patterns may name repositories that do not exist yet)." :
        "Matches " + n + (d.count === 1 ? " repository: " : " repositories: ") + d.first.join(", ") + (d.count > d.first.length ? ", …" : "") + ".";
      out.textContent = text;
      out.setAttribute("data-count", String(d.count));
      out.hidden = false;
    });
  }
  document.addEventListener("input", function (ev) {
    var el = ev.target;
    if (!el.matches || !el.matches("input[data-pattern]")) return;
    clearTimeout(previewTimers.get(el));
    previewTimers.set(el, setTimeout(function () { preview(el); }, 250));
  });
  function previewAll() {
    document.querySelectorAll("input[data-pattern]").forEach(function (el) { if (el.value.trim() !== "") preview(el); });
  }

  // New token: show the panel of the chosen mode.
  function showMode() {
    var checked = document.querySelector("input[data-mode]:checked");
    if (!checked) return;
    document.querySelectorAll("[data-mode-panel]").forEach(function (p) {
      p.hidden = p.getAttribute("data-mode-panel") !== checked.value;
    });
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.matches && ev.target.matches("input[data-mode]")) showMode();
  });
  function ready() {
    showMode();
    fitBoxes();
    previewAll();
  }
  document.addEventListener("DOMContentLoaded", ready);
  if (document.readyState !== "loading") ready();
})();
