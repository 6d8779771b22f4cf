// Runyard dashboard charts (vendored uPlot): every <figure data-chart> holding a
// <script type="application/json" class="chart-data"> {x, series: [{label, values,
// color (a CSS variable)}], bars, days} and a .chart-plot to draw in. Drawn on load and
// whenever htmx swaps new content in (the overview's live updates); resized with its box.
(function () {
  "use strict";

  function cssVar(name) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || "#888888";
  }

  function widthOf(fig, target) {
    return Math.max(220, Math.floor(target.clientWidth || fig.clientWidth - 32));
  }

  function draw(fig) {
    var script = fig.querySelector("script.chart-data");
    var target = fig.querySelector(".chart-plot");
    if (!script || !target || typeof uPlot === "undefined" || fig._plot) return;
    var spec = JSON.parse(script.textContent);
    var series = [{}];
    var data = [spec.x];
    spec.series.forEach(function (s) {
      var color = cssVar(s.color);
      var one = { label: s.label, stroke: color, width: 2, points: { show: !spec.bars } };
      if (spec.bars) {
        one.fill = color + "99";
        one.paths = uPlot.paths.bars({ size: [0.7, 40], align: 0 });
      }
      series.push(one);
      data.push(s.values);
    });
    var axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--border"), width: 1 },
                 ticks: { stroke: cssVar("--border"), width: 1 } };
    var opts = {
      width: widthOf(fig, target),
      height: 200,
      series: series,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [Object.assign({}, axis, spec.days ? { values: "{MM}-{DD}" } : {}), axis],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    target.textContent = "";
    fig._plot = new uPlot(opts, data, target);
    fig.dataset.drawn = "1";
    if (observer) observer.observe(target);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure[data-chart]").forEach(draw);
  }

  // A chart follows its box's width (a window resized, a phone turned) before the next
  // paint: a ResizeObserver, not a timer.
  var observer = typeof ResizeObserver === "function" ? new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var fig = entry.target.closest("figure[data-chart]");
      if (fig && fig._plot) {
        var width = widthOf(fig, entry.target);
        if (width !== fig._plot.width) fig._plot.setSize({ width: width, height: 200 });
      }
    });
  }) : null;

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (ev) { drawAll(ev.target); });
})();
