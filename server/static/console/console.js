// Progressive enhancement: pages work without this file; it draws charts and tidies forms.
(function () {
  "use strict";
  var canvas = document.getElementById("outcomes");
  if (!canvas || typeof Chart === "undefined") return;
  var data = JSON.parse(canvas.getAttribute("data-chart"));
  new Chart(canvas, {
    type: "doughnut",
    data: {
      labels: data.labels,
      datasets: [{ data: data.values, backgroundColor: ["#2f7d32", "#b26a00", "#8a94a0", "#1a5fb4"] }]
    },
    options: { aspectRatio: 2, plugins: { legend: { position: "bottom" } }, animation: false }
  });
})();

// An answer's form shows the plan and next date only for 正在协调解决, the reason only for
// 暂不具备解决条件 (without JavaScript every field shows, and the server checks them anyway).
(function () {
  "use strict";
  var groups = document.querySelectorAll("[data-outcome]");
  for (var i = 0; i < groups.length; i++) {
    (function (group) {
      var form = group.form || group.closest("form");
      if (!form) return;
      var parts = form.querySelectorAll("[data-show-for]");
      function update() {
        var checked = form.querySelector("input[name=outcome]:checked");
        var value = checked ? checked.value : "";
        for (var j = 0; j < parts.length; j++) {
          parts[j].hidden = value !== "" && parts[j].getAttribute("data-show-for") !== value;
        }
      }
      group.addEventListener("change", update);
      update();
    })(groups[i]);
  }
})();
