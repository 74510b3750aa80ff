/* btrfsqa dashboard: filters the list of tests on a run page by name and
 * verdict, in the page itself.
 *
 * It only reads text (each row's test name, its data-v verdict) and sets
 * the `hidden` property of rows and the text of a count: it never builds
 * markup, so a test name is only ever compared, never interpreted. Without
 * scripts the form stays hidden and every test is listed.
 *
 *   <form id="filter" hidden> <input name="q"> <select name="v"> <output id="filter-count">
 *   <tr id="t-0-3" data-v="fail"> ... <code class="tn">btrfs/011</code> ...
 *
 * The filter is kept in the address (?q=btrfs/01&v=fail), so a filtered
 * view can be linked to; a page opened with one starts filtered.
 */
(function () {
  "use strict";
  var form = document.getElementById("filter");
  if (!form || !window.URLSearchParams) {
    return;
  }
  var query = form.elements.namedItem("q");
  var verdict = form.elements.namedItem("v");
  var count = document.getElementById("filter-count");
  var NOT_PASSING = { fail: true, error: true, hung: true, crashed: true, interrupted: true };
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-v]"));
  var names = rows.map(function (row) {
    var name = row.querySelector(".tn");
    return name ? name.textContent.toLowerCase() : "";
  });
  var groups = Array.prototype.slice.call(document.querySelectorAll("tr.group"));

  function matches(i, needle, wanted) {
    var v = rows[i].getAttribute("data-v");
    return (needle === "" || names[i].indexOf(needle) !== -1) &&
      (wanted === "" || wanted === v || (wanted === "bad" && NOT_PASSING[v] === true));
  }

  function remember(needle, wanted) {
    if (!window.history || !window.history.replaceState) {
      return;
    }
    var params = new URLSearchParams(window.location.search);
    ["q", "v"].forEach(function (key) {
      params.delete(key);
    });
    if (needle !== "") {
      params.set("q", needle);
    }
    if (wanted !== "") {
      params.set("v", wanted);
    }
    var search = params.toString();
    window.history.replaceState(null, "", (search ? "?" + search : window.location.pathname) + window.location.hash);
  }

  function apply() {
    var raw = query.value.trim();
    var needle = raw.toLowerCase();
    var wanted = verdict.value;
    var shown = 0;
    rows.forEach(function (row, i) {
      var show = matches(i, needle, wanted);
      row.hidden = !show;
      if (show) {
        shown += 1;
      }
    });
    /* A profile's heading goes with its tests. */
    groups.forEach(function (heading) {
      var body = heading.parentNode;
      heading.hidden = !body.querySelector("tr[data-v]:not([hidden])");
    });
    count.textContent = shown === rows.length ? rows.length + " tests" : shown + " of " + rows.length + " tests shown";
    remember(raw, wanted);
  }

  var params = new URLSearchParams(window.location.search);
  query.value = params.get("q") || "";
  var wanted = params.get("v") || "";
  verdict.value = wanted;
  if (verdict.value !== wanted) {
    verdict.value = "";
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
  });
  form.hidden = false;
  apply();
})();
