// MeshGuard console: draws the statistics page's charts with Chart.js from the JSON the server
// put in #stats-data. Served from /console/static (no inline script: the console's CSP forbids it).
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("stats-data");
    if (!holder || typeof Chart === "undefined") { return; }
    var data = JSON.parse(holder.textContent);
    var hourly = document.getElementById("chart-hourly");
    if (hourly) {
      new Chart(hourly, {
        type: "bar",
        data: {
          labels: data.hourly.map(function (h) { return h.hour.slice(11); }),
          datasets: [
            { label: "allowed", data: data.hourly.map(function (h) { return h.allowed; }), backgroundColor: "#2e7d32" },
            { label: "denied", data: data.hourly.map(function (h) { return h.denied; }), backgroundColor: "#c62828" },
            { label: "rate limited / approval", data: data.hourly.map(function (h) { return h.other; }), backgroundColor: "#ef6c00" }
          ]
        },
        options: { animation: false, responsive: true, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
      });
    }
    var denied = document.getElementById("chart-denied");
    if (denied) {
      new Chart(denied, {
        type: "bar",
        data: {
          labels: data.top_denied.map(function (d) { return d.action; }),
          datasets: [{ label: "denied", data: data.top_denied.map(function (d) { return d.count; }), backgroundColor: "#c62828" }]
        },
        options: { animation: false, responsive: true, indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
      });
    }
    document.body.setAttribute("data-charts", "drawn");
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
