// Pantau dashboard: refresh the page's live part (#live) without a reload.
// Fetches the same URL with ?partial=1 every data-refresh seconds and patches the
// page to match, changing only what changed (links and buttons under the pointer
// stay the same elements); pauses while the tab is hidden or a form field in it has
// focus; reloads when the session ended.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.live !== "on") {
    return;
  }
  var every = Math.max(1, Number(document.body.dataset.refresh || "3")) * 1000;
  var stamp = document.getElementById("updated");

  function editing() {
    var el = document.activeElement;
    return el && live.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT" ||
      el.tagName === "TEXTAREA");
  }

  function syncAttributes(cur, next) {
    var i, attr;
    for (i = cur.attributes.length - 1; i >= 0; i--) {
      attr = cur.attributes[i];
      if (!next.hasAttribute(attr.name)) {
        cur.removeAttribute(attr.name);
      }
    }
    for (i = 0; i < next.attributes.length; i++) {
      attr = next.attributes[i];
      if (cur.getAttribute(attr.name) !== attr.value) {
        cur.setAttribute(attr.name, attr.value);
      }
    }
  }

  function morph(from, to) {
    var a = from.childNodes;
    var b = to.childNodes;
    for (var i = 0; i < b.length; i++) {
      var next = b[i];
      var cur = a[i];
      if (!cur) {
        from.appendChild(next.cloneNode(true));
      } else if (cur.nodeType !== next.nodeType || cur.nodeName !== next.nodeName) {
        from.replaceChild(next.cloneNode(true), cur);
      } else if (cur.nodeType === 1) {
        syncAttributes(cur, next);
        morph(cur, next);
      } else if (cur.nodeValue !== next.nodeValue) {
        cur.nodeValue = next.nodeValue;
      }
    }
    while (a.length > b.length) {
      from.removeChild(from.lastChild);
    }
  }

  function schedule() {
    window.setTimeout(tick, every);
  }

  function tick() {
    if (document.hidden || editing()) {
      schedule();
      return;
    }
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    fetch(url.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (typeof html === "string") {
          var fresh = document.createElement("template");
          fresh.innerHTML = html;
          morph(live, fresh.content);
          if (stamp) {
            stamp.textContent = new Date().toLocaleTimeString();
          }
          document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
        }
      })
      .catch(function () { /* central restarting: try again next time */ })
      .then(schedule);
  }

  schedule();
})();
