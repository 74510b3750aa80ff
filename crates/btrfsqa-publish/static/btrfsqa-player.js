/* btrfsqa dashboard: starts the terminal players of a run page.
 *
 * Everything it needs is in data-* attributes written by the dashboard, so
 * the page has no inline script and its Content-Security-Policy can allow
 * scripts from the site itself only. Without scripts the page still shows
 * every test and a link to each recording.
 *
 *   <div class="cast-player" id="rec-0" data-src="files/casts/m.cast" data-start="12.5">
 *   <a class="replay" href="#rec-0" data-player="rec-0" data-start="30.1">
 *
 * When the page is opened at a test (runs/ID/index.html#t-1-2), the player
 * of that test's machine opens at the test's first second.
 */
(function () {
  "use strict";
  /* From file:// a browser refuses to fetch the recording: leave the
   * page's link to the .cast file in place of a player that cannot load. */
  if (typeof AsciinemaPlayer === "undefined" || window.location.protocol === "file:") {
    return;
  }
  var players = {};

  function seconds(value) {
    var n = parseFloat(value);
    return isFinite(n) && n > 0 ? n : 0;
  }

  /* The replay link of the test the URL points at, if any. */
  function targetReplay() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (!id) {
      return null;
    }
    var row = document.getElementById(id);
    return row ? row.querySelector("a.replay[data-player]") : null;
  }

  function create(el, start) {
    var old = players[el.id];
    if (old) {
      old.dispose();
    }
    /* No idleTimeLimit: it would compress the timeline, and test starts
     * are seconds of the real recording. The poster shows the test's first
     * second; play starts at its beginning. */
    var options = {
      preload: true,
      fit: "width",
      terminalFontSize: "small",
      poster: "npt:" + (start + 1),
    };
    if (start > 0) {
      options.startAt = start;
    }
    var mount = el.querySelector(".cast-mount") || el;
    players[el.id] = AsciinemaPlayer.create(el.getAttribute("data-src"), mount, options);
    el.setAttribute("data-shown-at", String(start));
    var fallback = el.querySelector(".cast-fallback");
    if (fallback) {
      fallback.hidden = true;
    }
  }

  function openAt(link) {
    var el = document.getElementById(link.getAttribute("data-player"));
    if (!el) {
      return;
    }
    create(el, seconds(link.getAttribute("data-start")));
    el.scrollIntoView({ block: "start" });
  }

  var target = targetReplay();
  document.querySelectorAll(".cast-player[data-src]").forEach(function (el) {
    var start = seconds(el.getAttribute("data-start"));
    if (target && target.getAttribute("data-player") === el.id) {
      start = seconds(target.getAttribute("data-start"));
    }
    create(el, start);
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.replay[data-player]");
    if (!link) {
      return;
    }
    event.preventDefault();
    var row = link.closest("tr[id]");
    if (row && window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "#" + row.id);
    }
    openAt(link);
  });
})();
