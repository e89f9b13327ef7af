// auditstream viewer: time formatting, UTC toggle, row clicks, type-ahead picks,
// live mode (SSE), copy button. No inline script anywhere: the CSP forbids it.
// Event data arrives as server-rendered, escaped HTML or is set with textContent only.
(function () {
  "use strict";

  var UTC_KEY = "auditstream.utc";
  var MAX_LIVE_ROWS = 500;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // "Mar 10, 2026, 03:43:21 PM GMT+05:30" in the viewer's zone, or "... UTC".
  function formatTime(date, utc) {
    var opts = { month: "short", day: "numeric", year: "numeric", hour: "2-digit",
                 minute: "2-digit", second: "2-digit", hour12: true };
    if (utc) { opts.timeZone = "UTC"; }
    var text = new Intl.DateTimeFormat("en-US", opts).format(date);
    if (utc) { return text + " UTC"; }
    var off = -date.getTimezoneOffset();
    var sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    return text + " GMT" + sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }

  function useUtc() { return window.localStorage.getItem(UTC_KEY) === "1"; }

  function formatTimes(root) {
    var utc = useUtc();
    var nodes = (root || document).querySelectorAll("time.ts[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        nodes[i].textContent = formatTime(d, utc);
        nodes[i].title = nodes[i].getAttribute("datetime");
      }
    }
    var toggle = document.getElementById("tz-toggle");
    if (toggle) { toggle.textContent = utc ? "Show local time" : "Show UTC"; }
  }

  function updateCount() {
    var shown = document.getElementById("shown");
    if (shown) {
      shown.textContent = String(document.querySelectorAll("#event-rows tr[data-event-id]").length);
    }
  }

  function setupTimeToggle() {
    var toggle = document.getElementById("tz-toggle");
    if (!toggle) { return; }
    toggle.addEventListener("click", function () {
      window.localStorage.setItem(UTC_KEY, useUtc() ? "0" : "1");
      formatTimes(document);
    });
  }

  // A click anywhere on a row opens its detail (the activity cell holds the real link).
  function setupRowClicks() {
    document.addEventListener("click", function (ev) {
      var target = ev.target;
      if (target.closest("a, button, input, select, label")) { return; }
      var row = target.closest("tr[data-event-id]");
      if (!row) { return; }
      var link = row.querySelector("a.open");
      if (link) { window.location.assign(link.getAttribute("href")); }
    });
  }

  function setupTypeahead() {
    var list = document.getElementById("actor-options");
    var input = document.getElementById("actor-input");
    if (!list || !input) { return; }
    list.addEventListener("click", function (ev) {
      var option = ev.target.closest("button[data-actor]");
      if (!option) { return; }
      input.value = option.getAttribute("data-actor");
      list.textContent = "";
      input.form.requestSubmit();
    });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { list.textContent = ""; }
    });
  }

  function setupCopy() {
    var button = document.getElementById("copy-json");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var pre = document.getElementById(button.getAttribute("data-copy-target"));
      var state = document.getElementById("copy-state");
      var text = pre ? pre.textContent : "";
      var done = function () { if (state) { state.textContent = "Copied"; } };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () {
          if (state) { state.textContent = "Copy failed: select the text instead"; }
        });
      }
    });
  }

  // Live mode: an EventSource on /ui/live with the table's filters. Rows arrive
  // rendered (escaped) by the server; paused rows wait in a bounded queue.
  function setupLive() {
    var toggle = document.getElementById("live-toggle");
    var pause = document.getElementById("live-pause");
    var state = document.getElementById("live-state");
    var table = document.getElementById("events");
    var tbody = document.getElementById("event-rows");
    if (!toggle || !table || !tbody) { return; }
    var source = null;
    var paused = false;
    var queue = [];

    function show(text, cls) { state.textContent = text; state.className = "live-state " + cls; }

    function insert(html) {
      var tmp = document.createElement("tbody");
      tmp.innerHTML = html;
      var row = tmp.querySelector("tr[data-event-id]");
      if (!row) { return; }
      if (tbody.querySelector('tr[data-event-id="' + row.getAttribute("data-event-id") + '"]')) { return; }
      row.classList.add("live-new");
      formatTimes(row);
      tbody.insertBefore(row, tbody.firstChild);
      var rows = tbody.querySelectorAll("tr[data-event-id]");
      for (var i = MAX_LIVE_ROWS; i < rows.length; i++) { rows[i].remove(); }
      var empty = document.getElementById("empty");
      if (empty) { empty.remove(); }
      updateCount();
    }

    function start() {
      var query = table.getAttribute("data-live-query") || "";
      source = new EventSource("/ui/live" + (query ? "?" + query : ""));
      source.addEventListener("open", function () { show(paused ? "Paused" : "Live", paused ? "paused" : "on"); });
      source.addEventListener("row", function (ev) {
        if (paused) {
          queue.push(ev.data);
          if (queue.length > MAX_LIVE_ROWS) { queue.shift(); }
          show("Paused (" + queue.length + " new)", "paused");
        } else {
          insert(ev.data);
        }
      });
      source.addEventListener("error", function () { show("Reconnecting…", "paused"); });
      toggle.setAttribute("aria-pressed", "true");
      toggle.textContent = "Stop live";
      pause.hidden = false;
      show("Connecting…", "paused");
    }

    function stop() {
      if (source) { source.close(); source = null; }
      paused = false;
      queue = [];
      toggle.setAttribute("aria-pressed", "false");
      toggle.textContent = "Live mode";
      pause.hidden = true;
      pause.textContent = "Pause";
      show("Live off", "off");
    }

    toggle.addEventListener("click", function () { if (source) { stop(); } else { start(); } });
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      if (!paused) {
        while (queue.length) { insert(queue.shift()); }
        show("Live", "on");
      } else {
        show("Paused", "paused");
      }
    });
  }

  // Empty filter fields stay out of the URL, so it holds exactly the active filters.
  function setupFilterForm() {
    var form = document.getElementById("filter-form");
    if (!form) { return; }
    form.addEventListener("submit", function () {
      var fields = form.querySelectorAll("input[name], select[name]");
      for (var i = 0; i < fields.length; i++) {
        var el = fields[i];
        var empty = el.multiple ? el.selectedOptions.length === 0 : el.value.trim() === "";
        if (empty) { el.disabled = true; }
      }
      window.setTimeout(function () {
        for (var j = 0; j < fields.length; j++) { fields[j].disabled = false; }
      }, 0);
    });
  }

  // Histogram (loaded by htmx after the table): a click on a bar narrows to its bucket
  // (a plain link); dragging across bars narrows to the whole span, keeping the other
  // filters of the URL. Listeners sit on the document, so a swapped-in chart works too.
  function setupHistogram() {
    var first = null;
    var dragged = false;
    function barOf(ev) {
      return ev.target.closest ? ev.target.closest(".histogram a.bar-link") : null;
    }
    document.addEventListener("mousedown", function (ev) {
      first = barOf(ev); dragged = false;
      if (first) { ev.preventDefault(); }
    });
    document.addEventListener("mouseover", function (ev) {
      var bar = barOf(ev);
      if (first && bar && bar !== first) { dragged = true; }
    });
    document.addEventListener("mouseup", function (ev) {
      var last = barOf(ev);
      if (first && last && dragged) {
        var a = first.getAttribute("data-start"), b = last.getAttribute("data-start");
        var lo = a < b ? first : last, hi = a < b ? last : first;
        var params = new URLSearchParams(window.location.search);
        params.set("since", lo.getAttribute("data-start"));
        params.set("until", hi.getAttribute("data-end"));
        window.location.assign("/?" + params.toString());
      }
      first = null;
    });
    document.addEventListener("click", function (ev) {
      if (dragged && barOf(ev)) { ev.preventDefault(); dragged = false; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupFilterForm();
    setupHistogram();
    formatTimes(document);
    updateCount();
    setupTimeToggle();
    setupRowClicks();
    setupTypeahead();
    setupCopy();
    setupLive();
    document.body.addEventListener("htmx:afterSettle", function (ev) {
      formatTimes(ev.target);
      updateCount();
    });
    document.documentElement.setAttribute("data-ready", "1");
  });
})();
