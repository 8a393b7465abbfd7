// jobkit dashboard: live refresh. Every few seconds (the body's data-refresh), fetch this same
// page and swap in its [data-live] regions by id, so counts move while the scroll position,
// the focus and anything typed stay put. Never two fetches at once; none while the tab is
// hidden; the "live" box turns it off (remembered in localStorage). Pages work without it.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0)) return;
  var toggle = document.getElementById("live-toggle");
  var KEY = "jobkit-dashboard-live";
  if (toggle) {
    toggle.parentElement.hidden = false;
    toggle.checked = window.localStorage.getItem(KEY) !== "off";
    toggle.addEventListener("change", function () {
      window.localStorage.setItem(KEY, toggle.checked ? "on" : "off");
    });
  }
  var inFlight = false;

  function refresh() {
    if (inFlight || document.hidden || (toggle && !toggle.checked)) return;
    inFlight = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Jobkit-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (region) {
          var replacement = fresh.getElementById(region.id);
          if (replacement && region.innerHTML !== replacement.innerHTML) {
            region.innerHTML = replacement.innerHTML;
          }
        });
        document.body.setAttribute("data-refreshed", new Date().toISOString());
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { inFlight = false; });
  }

  window.setInterval(refresh, seconds * 1000);
})();
