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
    target.focus();
    target.select();
    try {
      if (document.execCommand("copy")) done();
    } catch (e) { /* the text stays selected for the user to copy */ }
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-copy]");
    if (!b) return;
    var t = document.getElementById(b.getAttribute("data-copy"));
    if (t) copy(t, b);
  });

  // Confirmation: a submit button (or form) with data-confirm="question".
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var b = ev.submitter && ev.submitter.hasAttribute("data-confirm") ? ev.submitter : form;
    var q = b.getAttribute && b.getAttribute("data-confirm");
    if (q && !window.confirm(q)) ev.preventDefault();
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
  document.addEventListener("DOMContentLoaded", showMode);
  if (document.readyState !== "loading") showMode();
})();
