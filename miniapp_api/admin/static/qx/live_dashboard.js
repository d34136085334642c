/* One live session's dashboard (templates/qx/live_dashboard/board.html): every 2 s the page
   fetches data.json (miniapp_api/admin/live_dashboard.py: the same figures as the creator's API
   and the kept samples) and rewrites the figures, products, hints and polls; the chart of
   online viewers and paid orders is drawn with the vendored ECharts. Text is set with
   textContent only (product names and poll texts come from users). */
(function () {
  "use strict";

  var root = document.getElementById("live-board");
  var source = document.getElementById("live-board-data");
  if (!root || !source) {
    return;
  }
  var initial = JSON.parse(source.textContent);
  var labels = initial.labels;
  var states = initial.states;
  var chart = null;

  function yuan(fen) {
    if (fen === null || fen === undefined) {
      return "—";
    }
    var whole = Math.floor(Math.abs(fen) / 100);
    var cents = String(Math.abs(fen) % 100);
    return (fen < 0 ? "-" : "") + "¥" + whole + "." + (cents.length < 2 ? "0" + cents : cents);
  }

  function percent(bp) {
    var cents = String(bp % 100);
    return Math.floor(bp / 100) + "." + (cents.length < 2 ? "0" + cents : cents) + "%";
  }

  function set(field, value) {
    var cells = root.querySelectorAll('[data-field="' + field + '"]');
    for (var i = 0; i < cells.length; i++) {
      cells[i].textContent = value;
    }
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function products(list) {
    var body = document.querySelector("#products tbody");
    if (!body) {
      return;
    }
    body.textContent = "";
    list.forEach(function (p) {
      var row = document.createElement("tr");
      row.setAttribute("data-sku", p.sku);
      cell(row, p.name || p.sku);
      cell(row, String(p.units));
      cell(row, yuan(p.gmv_fen));
      cell(row, yuan(p.price_fen));
      cell(row, p.sold_out ? "0" : (p.left_at_tier === null ? "—" : String(p.left_at_tier)));
      cell(row, p.left_total === null ? "—" : String(p.left_total));
      body.appendChild(row);
    });
  }

  function hints(list) {
    var ul = document.getElementById("hints");
    if (!ul) {
      return;
    }
    ul.textContent = "";
    list.forEach(function (h) {
      var li = document.createElement("li");
      li.setAttribute("data-code", h.code);
      li.textContent = h.text;
      ul.appendChild(li);
    });
  }

  function polls(list) {
    list.forEach(function (poll) {
      var box = root.querySelector('[data-poll="' + poll.id + '"]');
      if (!box) {
        return;  // a new poll shows at the next page load (its close form needs a fresh token)
      }
      var spans = box.querySelectorAll("span.ml-2");
      poll.options.forEach(function (o, i) {
        if (spans[i]) {
          spans[i].textContent = o.label + "：" + o.votes;
        }
      });
    });
  }

  function draw(history) {
    var element = document.getElementById("chart-live");
    if (!element || typeof echarts === "undefined") {
      return;
    }
    chart = chart || echarts.init(element);
    var times = history.map(function (p) {
      return new Date(p.t * 1000).toLocaleTimeString();
    });
    chart.setOption({
      animation: false,
      tooltip: {trigger: "axis"},
      legend: {data: [labels.online, labels.orders]},
      title: history.length ? {show: false} : {show: true, left: "center", top: "middle", text: labels.empty,
                                                textStyle: {color: "#6c757d", fontSize: 14, fontWeight: "normal"}},
      xAxis: {type: "category", data: times},
      yAxis: [{type: "value", minInterval: 1}, {type: "value", minInterval: 1}],
      series: [
        {name: labels.online, type: "line", data: history.map(function (p) { return p.online; })},
        {name: labels.orders, type: "line", yAxisIndex: 1, data: history.map(function (p) { return p.orders; })}
      ]
    });
  }

  function show(data) {
    ["online", "peak_online", "unique_viewers", "orders", "buyers", "orders_placed", "turned_up",
     "reservations", "as_of"].forEach(function (k) {
      set(k, String(data[k]));
    });
    set("gmv", yuan(data.gmv_fen));
    set("conversion", percent(data.conversion_bp));
    set("state_label", states[data.state] || data.state);
    products(data.products);
    hints(data.hints);
    polls(data.polls);
    draw(data.history);
  }

  function refresh() {
    fetch(root.getAttribute("data-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { show(data); } })
      .catch(function () { /* try again at the next tick */ });
  }

  draw(initial.history);
  window.setInterval(refresh, parseInt(root.getAttribute("data-every-ms"), 10) || 2000);
  window.addEventListener("resize", function () { if (chart) { chart.resize(); } });
}());
