/* The dashboard's charts (templates/qx/dashboard.html), drawn with the vendored ECharts from the
   JSON block #dashboard-data that the page carries (miniapp_api/admin/dashboard.py chart_data):
   amounts in fen, written as yuan from integers here as models/money.py writes them; the labels
   arrive in the operator's language. */
(function () {
  "use strict";

  var source = document.getElementById("dashboard-data");
  if (!source || typeof echarts === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var labels = data.labels;
  var charts = [];

  function yuan(fen) {
    var whole = Math.floor(Math.abs(fen) / 100);
    var cents = String(Math.abs(fen) % 100);
    return (fen < 0 ? "-" : "") + "¥" + whole + "." + (cents.length < 2 ? "0" + cents : cents);
  }

  function fenToYuan(fen) {
    return fen / 100; // axis positions only; every amount shown as text goes through yuan()
  }

  function init(id) {
    var element = document.getElementById(id);
    if (!element) {
      return null;
    }
    var chart = echarts.init(element);
    charts.push(chart);
    return chart;
  }

  function empty(text) {
    return {
      show: true, left: "center", top: "middle", text: text,
      textStyle: {color: "#6c757d", fontSize: 14, fontWeight: "normal"}
    };
  }

  function daily() {
    var chart = init("chart-daily");
    if (!chart) {
      return;
    }
    chart.setOption({
      animation: false,
      color: ["#3b7ddd", "#f59f00"],
      grid: {left: 64, right: 48, top: 40, bottom: 32},
      legend: {top: 0, data: [labels.gmv, labels.orders]},
      tooltip: {
        trigger: "axis",
        axisPointer: {type: "shadow"},
        formatter: function (items) {
          var day = items.length ? items[0].axisValue : "";
          var i = items.length ? items[0].dataIndex : 0;
          return day + "<br>" + labels.gmv + ": " + yuan(data.gmv_fen[i]) + "<br>" + labels.orders + ": "
            + data.orders[i];
        }
      },
      xAxis: {
        type: "category",
        data: data.days,
        axisLabel: {formatter: function (day) { return day.slice(5); }}
      },
      yAxis: [
        {type: "value", name: labels.yuan, position: "left", minInterval: 1},
        {type: "value", name: labels.count, position: "right", minInterval: 1, splitLine: {show: false}}
      ],
      series: [
        {name: labels.gmv, type: "bar", yAxisIndex: 0, barMaxWidth: 18, data: data.gmv_fen.map(fenToYuan)},
        {name: labels.orders, type: "line", yAxisIndex: 1, symbolSize: 6, data: data.orders}
      ]
    });
  }

  function ranking(id, rows, color) {
    var chart = init(id);
    if (!chart) {
      return;
    }
    var shown = rows.slice().reverse(); // the best at the top of a horizontal bar chart
    chart.setOption({
      animation: false,
      color: [color],
      title: rows.length ? {show: false} : empty(labels.empty),
      grid: {left: 8, right: 72, top: 8, bottom: 24, containLabel: true},
      tooltip: {
        trigger: "item",
        formatter: function (item) { return echarts.format.encodeHTML(item.name) + ": " + yuan(shown[item.dataIndex].gmv_fen); }
      },
      xAxis: {type: "value", name: labels.yuan, show: rows.length > 0},
      yAxis: {
        type: "category",
        show: rows.length > 0,
        data: shown.map(function (row) { return row.name; }),
        axisLabel: {width: 160, overflow: "truncate"}
      },
      series: [{
        name: labels.gmv,
        type: "bar",
        barMaxWidth: 20,
        data: shown.map(function (row) { return fenToYuan(row.gmv_fen); }),
        label: {
          show: true,
          position: "right",
          formatter: function (item) { return yuan(shown[item.dataIndex].gmv_fen); }
        }
      }]
    });
  }

  function funnel() {
    var chart = init("chart-funnel");
    if (!chart) {
      return;
    }
    var any = data.funnel.some(function (stage) { return stage.value > 0; });
    // Plays outnumber orders a hundred times or more: the widths follow log10(count + 1), so each
    // stage stays readable; the labels carry the counts and the conversion from the stage before.
    var stages = data.funnel.map(function (stage, i) {
      var before = i > 0 ? data.funnel[i - 1].value : 0;
      return {
        name: stage.name,
        value: Math.log10(stage.value + 1),
        count: stage.value,
        rate: before > 0 ? (Math.round(stage.value * 10000 / before) / 100).toFixed(2) + "%" : ""
      };
    });
    var widest = Math.max.apply(null, stages.map(function (stage) { return stage.value; }).concat([1]));
    function text(item) {
      var stage = stages[item.dataIndex];
      return stage.name + "\n" + stage.count + (stage.rate ? " (" + stage.rate + ")" : "");
    }
    chart.setOption({
      animation: false,
      color: ["#74c0fc", "#339af0", "#1864ab"],
      title: any ? {show: false} : empty(labels.empty),
      tooltip: {trigger: "item", formatter: function (item) { return text(item).replace("\n", ": "); }},
      series: [{
        name: labels.funnel,
        type: "funnel",
        sort: "none", // the stages in their order: plays -> live-room entries -> orders
        left: "6%", right: "6%", top: 16, bottom: 16,
        min: 0,
        max: widest,
        minSize: "20%",
        maxSize: "100%",
        gap: 4,
        label: {show: true, position: "inside", formatter: text, color: "#fff", fontSize: 13, lineHeight: 18},
        data: stages
      }]
    });
  }

  daily();
  funnel();
  ranking("chart-top-skus", data.top_skus, "#37b24d");
  ranking("chart-top-creators", data.top_creators, "#ae3ec9");

  window.addEventListener("resize", function () {
    charts.forEach(function (chart) { chart.resize(); });
  });
}());
