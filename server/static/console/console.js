// Progressive enhancement: pages work without this file; it only draws charts.
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
