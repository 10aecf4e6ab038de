// The admin dashboard's live figures: every second the page asks /api/live and writes each
// value into the element whose data-live names it. Without JavaScript the figures are those
// of when the page was loaded (reload it to refresh).
(function () {
  "use strict";
  var root = document.querySelector("[data-live-url]");
  if (!root) return;
  var url = root.getAttribute("data-live-url");
  var stamp = document.getElementById("live-updated");

  function show(v) {
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1);
  }

  async function tick() {
    try {
      var r = await fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      if (r.status === 401) { window.location.href = "/login"; return; }
      var j = await r.json();
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var v = j.values[el.getAttribute("data-live")];
        if (v !== undefined && v !== null) el.textContent = show(v);
      });
      if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (stamp) stamp.textContent = "not updating: " + e.message;
    }
    window.setTimeout(tick, 1000);
  }
  tick();
})();
