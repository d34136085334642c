"""The starter word lists that migration 0025 seeds (issue 16); operators edit them in the admin.

- ABSOLUTE: the Advertising Law's absolute claims (广告法 第九条第三项: "国家级"、"最高级"、"最佳"
  等用语) and the forms market regulators list with them. Action "rewrite": the claim is dropped
  from the text. A bare "最" is NOT a word: it is matched only in the "最 + adjective" forms
  listed here (最佳, 最好, 最低价, ...), so 最近 / 最后 / 最初 / 最终 / 最早 (time) and 最少需要
  (a quantity) are never touched.
- ALLOW: exceptions. A claim found wholly inside an allowed word is not a claim: "第一" is, but
  "第一次" / "第一步" / "第一时间" are ordinals.
- SENSITIVE: a small, tasteful list of gambling, fraud and illegal-goods terms. Action "block":
  nothing generated that contains one is shown or sent, and a group message with one is logged.
"""

from __future__ import annotations

ABSOLUTE: tuple[str, ...] = (
    # 最 + adjective (superlatives of quality, price and popularity)
    "最佳", "最好", "最优", "最优秀", "最低价", "最低折扣", "最高级", "最高端", "最便宜", "最划算", "最实惠",
    "最优惠", "最先进", "最受欢迎", "最畅销", "最热销", "最火", "最强", "最顶级", "最权威", "最专业", "最正宗",
    "最安全", "最有效", "最完美", "最牛", "最棒", "最大品牌", "全网最", "全网最低", "史上最", "史上最低",
    "全国最", "世界最",
    # rankings
    "第一", "销量第一", "排名第一", "行业第一", "全网第一", "全国第一", "第一品牌", "no.1", "top1",
    # level and uniqueness
    "国家级", "世界级", "顶级", "极品", "极致", "独一无二", "绝无仅有", "唯一", "首选", "无敌",
    "遥遥领先", "领导品牌", "空前绝后", "前无古人",
    # efficacy guarantees
    "100%有效", "百分百有效", "100%安全", "万能", "绝对", "零风险", "包治百病",
)

ALLOW: tuple[str, ...] = (
    "第一次", "第一步", "第一天", "第一时间", "第一期", "第一集", "第一单", "第一个", "第一件", "第一批",
    "第一眼", "第一位", "第一周", "第一场", "第一篇", "第一条", "第一章",
)

SENSITIVE: tuple[str, ...] = (
    # gambling
    "赌博", "网赌", "博彩", "赌场", "百家乐", "六合彩", "时时彩", "老虎机", "赌球", "casino",
    # fraud and money laundering
    "刷单", "套现", "信用卡套现", "洗钱", "代开发票", "发票代开", "办假证", "假证", "裸贷", "高利贷",
    "跑分", "杀猪盘",
    # illegal goods
    "枪支", "仿真枪", "弹药", "管制刀具", "迷药", "冰毒", "大麻", "摇头丸", "假币", "窃听器", "针孔摄像头",
    "代孕",
)

DEFAULTS: tuple[tuple[str, str, str], ...] = (
    *(("absolute", w, "rewrite") for w in ABSOLUTE),
    *(("allow", w, "allow") for w in ALLOW),
    *(("sensitive", w, "block") for w in SENSITIVE),
)
