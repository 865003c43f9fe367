// candor troubleshooting pages: search the error codes of the embedded index. No network.
(function () {
  "use strict";
  var data = document.getElementById("search-index");
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  var status = document.getElementById("search-status");
  if (!data || !input || !list || !status) {
    return;
  }
  var entries = JSON.parse(data.textContent);
  entries.forEach(function (e) {
    e.head = (e.code.replace(/_/g, " ") + " " + e.code + " " + e.title).toLowerCase();
    e.body = (e.explanation + " " + e.status + " " + e.stage).toLowerCase();
  });

  function search(text) {
    var words = text.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
    if (words.length === 0) {
      return null;
    }
    var found = [];
    entries.forEach(function (e) {
      var score = 0;
      for (var i = 0; i < words.length; i++) {
        if (e.head.indexOf(words[i]) >= 0) {
          score += 2;
        } else if (e.body.indexOf(words[i]) >= 0) {
          score += 1;
        } else {
          return;
        }
      }
      found.push({ entry: e, score: score });
    });
    found.sort(function (a, b) { return b.score - a.score; });
    return found.map(function (f) { return f.entry; });
  }

  function show() {
    var found = search(input.value);
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    if (found === null) {
      status.textContent = "";
      return;
    }
    status.textContent = found.length === 1 ? "1 code matches." : found.length + " codes match.";
    found.forEach(function (e) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = e.href;
      var code = document.createElement("code");
      code.textContent = e.code;
      a.appendChild(code);
      li.appendChild(a);
      li.appendChild(document.createTextNode(" — " + e.status + " " + e.title));
      list.appendChild(li);
    });
  }

  input.addEventListener("input", show);
  var query = new URLSearchParams(window.location.search).get("q");
  if (query) {
    input.value = query;
  }
  show();
})();
