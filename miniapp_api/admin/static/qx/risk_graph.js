/* A risk case's evidence graph (templates/qx/risk/case.html): the creator, the users, orders and
   the identities they share (an IP /24, a device, a phone, a payer; short hashes only) drawn as an
   ECharts graph with a force layout, from the JSON block #risk-graph-data that the page carries
   (miniapp_api/admin/risk_forms.py graph_data: risk_cases.evidence(id).graph plus the categories'
   names in the operator's language). When the first frame is drawn the element gets
   data-drawn="1" (the browser test waits for it). Names are data: ECharts renders them as
   canvas text, never as HTML. */
(function () {
  "use strict";

  var element = document.getElementById("risk-graph");
  var source = document.getElementById("risk-graph-data");
  if (!element || !source || typeof echarts === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var keys = data.categories.map(function (c) { return c.key; });
  var chart = echarts.init(element);

  function node(n) {
    var index = keys.indexOf(String(n.category || ""));
    return {
      id: String(n.id),
      name: String(n.name === undefined || n.name === null ? n.id : n.name),
      category: index < 0 ? 0 : index,
      symbolSize: n.category === "creator" ? 28 : 16
    };
  }

  function link(l) {
    return {source: String(l.source), target: String(l.target), value: l.label || ""};
  }

  chart.on("finished", function () {
    element.setAttribute("data-drawn", "1");
  });
  chart.setOption({
    animation: false,
    title: data.nodes.length ? undefined : {
      show: true, left: "center", top: "middle", text: data.labels.empty,
      textStyle: {color: "#6c757d", fontSize: 14, fontWeight: "normal"}
    },
    tooltip: {
      formatter: function (item) {
        return echarts.format.encodeHTML(item.dataType === "edge" ? String(item.data.value || "") : item.name);
      }
    },
    legend: {top: 0, data: data.categories.map(function (c) { return c.name; })},
    series: [{
      type: "graph",
      layout: "force",
      roam: true,
      draggable: true,
      top: 32,
      label: {show: true, position: "right", fontSize: 11},
      edgeLabel: {show: false},
      force: {repulsion: 420, edgeLength: [70, 150], gravity: 0.04},
      categories: data.categories.map(function (c) { return {name: c.name}; }),
      data: data.nodes.map(node),
      links: data.links.map(link),
      lineStyle: {color: "source", opacity: 0.7}
    }]
  });
  window.addEventListener("resize", function () { chart.resize(); });
}());
