// Runyard dashboard: the nav toggle on a phone, confirm dialogs, row selection.
(function () {
  "use strict";

  function setupNav() {
    var toggle = document.querySelector(".nav-toggle");
    var nav = document.getElementById("nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // A form with data-confirm="dialog-id" opens that <dialog> first; its confirm button
  // submits the form (a real button: keyboard and screen readers reach it).
  function setupConfirm(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.confirmReady) return;
      form.dataset.confirmReady = "1";
      form.addEventListener("submit", function (ev) {
        if (form.dataset.confirmed === "1") return;
        var dialog = document.getElementById(form.dataset.confirm);
        if (!dialog || typeof dialog.showModal !== "function") return;
        ev.preventDefault();
        var submitter = ev.submitter || null;
        var text = dialog.querySelector("[data-confirm-text]");
        if (text && form.dataset.confirmText) {
          var n = form.querySelectorAll("input[name=ids]:checked").length +
            document.querySelectorAll("input[name=ids][form='" + form.id + "']:checked").length;
          var verb = submitter && submitter.textContent ? submitter.textContent.trim() + ": " : "";
          text.textContent = verb + form.dataset.confirmText.replace("{n}", String(n));
        }
        var yes = dialog.querySelector("[data-confirm-yes]");
        var no = dialog.querySelector("[data-confirm-no]");
        function cleanup() {
          yes.removeEventListener("click", onYes);
          no.removeEventListener("click", onNo);
        }
        function onYes() {
          cleanup();
          dialog.close();
          form.dataset.confirmed = "1";
          if (form.requestSubmit) form.requestSubmit(submitter);
          else form.submit();
        }
        function onNo() {
          cleanup();
          dialog.close();
        }
        yes.addEventListener("click", onYes);
        no.addEventListener("click", onNo);
        dialog.showModal();
        yes.focus();
      });
    });
  }

  // Checkboxes named "ids" beside a "select all" box; the selection count is shown.
  function setupSelection(root) {
    var all = root.querySelector("input[data-select-all]");
    function update() {
      var boxes = document.querySelectorAll("input[name=ids][form]");
      var n = 0;
      boxes.forEach(function (b) { if (b.checked) n++; });
      document.querySelectorAll("[data-selected-count]").forEach(function (el) {
        el.textContent = String(n);
      });
      document.querySelectorAll("[data-needs-selection]").forEach(function (el) {
        el.disabled = n === 0;
      });
    }
    if (all && !all.dataset.ready) {
      all.dataset.ready = "1";
      all.addEventListener("change", function () {
        document.querySelectorAll("input[name=ids][form]").forEach(function (b) {
          b.checked = all.checked;
        });
        update();
      });
    }
    document.addEventListener("change", function (ev) {
      if (ev.target && ev.target.name === "ids") update();
    });
    update();
  }

  // Relative times ("3 min ago") are kept current.
  function refreshTimes() {
    var now = Date.now() / 1000;
    document.querySelectorAll("time[data-epoch]").forEach(function (t) {
      var d = now - parseFloat(t.dataset.epoch);
      var ahead = d < 0;
      d = Math.abs(d);
      var s;
      if (d < 1) { t.textContent = "now"; return; }
      if (d < 60) s = Math.floor(d) + " s";
      else if (d < 3600) s = Math.floor(d / 60) + " min";
      else if (d < 86400) s = Math.floor(d / 3600) + " h";
      else s = Math.floor(d / 86400) + " d";
      t.textContent = ahead ? "in " + s : s + " ago";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupNav();
    setupConfirm(document);
    setupSelection(document);
    window.setInterval(refreshTimes, 10000);
  });
  // The live state of the page's stream, for people (and tests): data-live on <body>.
  document.addEventListener("htmx:sseOpen", function () {
    document.body.dataset.live = "open";
  });
  document.addEventListener("htmx:sseError", function () {
    document.body.dataset.live = "reconnecting";
  });
  document.addEventListener("htmx:sseClose", function () {
    document.body.dataset.live = "closed";
  });
  // A first live row replaces the "no runs" line.
  document.addEventListener("htmx:sseMessage", function () {
    var none = document.getElementById("no-runs");
    var body = document.getElementById("runs-body");
    if (none && body && body.children.length) none.remove();
    // New rows come at the top: a page left open keeps the newest 200 (live.ROWS_MAX).
    while (body && body.children.length > 200) body.removeChild(body.lastElementChild);
  });
  document.addEventListener("htmx:load", function (ev) {
    setupConfirm(ev.target);
  });
})();
