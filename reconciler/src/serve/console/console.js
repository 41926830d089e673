// The novacron-reconcile console's live updates: follows /events and, after each finished run,
// fetches the current page again and swaps its <main>. Every page works without this script.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var body = document.body;
  var page = body.dataset.page;
  if (page === "signin" || page === "error") {
    return;
  }
  var refreshes = 0;
  var busy = false;
  var again = false;

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        // A redirect (the session expired) or an error page: keep what is shown.
        if (!response.ok || response.redirected) {
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (!fresh || !current) {
          return;
        }
        // A flash message is shown once by the server; keep it on screen across updates.
        var flash = current.querySelector("p.flash");
        current.innerHTML = fresh.innerHTML;
        if (flash && !current.querySelector("p.flash")) {
          current.insertBefore(flash, current.firstChild);
        }
        refreshes += 1;
        body.dataset.refreshes = String(refreshes);
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = new EventSource("/events");
  source.addEventListener("open", function () {
    body.dataset.live = "on";
  });
  source.addEventListener("error", function () {
    body.dataset.live = source.readyState === EventSource.CLOSED ? "off" : "reconnecting";
  });
  source.addEventListener("run", function (event) {
    var run;
    try {
      run = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (page === "repo" && run.repo !== body.dataset.repo) {
      return;
    }
    refresh();
  });
})();
