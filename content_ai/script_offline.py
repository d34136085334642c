"""The offline script composer: 15 / 30 / 60 s variants from templates, with no model.

The angle (the viewer's pain point the script opens with) is chosen by the product and the
topic: the product's keywords first (the pain it solves), then the topic's, else the nearest
angle by the in-process embedding model (content_ai.embeddings; a failure there falls back to
the general angle). The selling points are the product's own (content_ai.script_facts), the
ones sharing most words with the topic first. The tone of the hook, proof and call to action
follows the creator's style (亲切 / 专业 / 搞笑 and their neighbours; warm by default). Every
sentence is either fixed template text, written without numbers or promises, or a catalog fact,
so the output passes content_ai.guard by construction (the tests check it). Deterministic: the
same inputs give the same script.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any

from content_ai.script_facts import ScriptFacts

log = logging.getLogger(__name__)

# name: (keywords in the topic or the product, the pain point, a description for the embeddings)
ANGLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "video": (("追剧", "剧", "电影", "视频", "影视", "综艺", "动漫", "影音"),
              "想追的剧总要会员，片头广告又长又多？", "追剧 看电影 视频会员 综艺 动漫"),
    "music": (("音乐", "听歌", "歌单", "音频", "耳机"),
              "喜欢的歌总是只能试听，切来切去好麻烦？", "听音乐 歌单 音频会员"),
    "study": (("学习", "考试", "网课", "考研", "英语", "课程", "阅读", "读书", "知识"),
              "想提升自己，学习资料却总是东拼西凑？", "学习 考试 网课 读书 知识付费"),
    "game": (("游戏", "点券", "皮肤", "手游", "开黑", "电竞"),
             "游戏充值怕踩坑，怕充了迟迟不到账？", "游戏充值 点券 皮肤 手游"),
    "phone": (("话费", "流量", "通话", "手机卡"),
              "话费流量总是不经意就用完了，还得到处找地方充？", "话费充值 手机流量"),
    "food": (("外卖", "美食", "咖啡", "奶茶", "餐", "早餐", "下午茶"),
             "每天点外卖、买咖啡，小钱加起来也不少？", "外卖 咖啡 奶茶 美食券"),
    "travel": (("出行", "打车", "旅行", "旅游", "酒店", "机票", "火车"),
               "出门在外，订票打车总想找个省心的办法？", "出行 打车 旅游 酒店"),
    "save": (("省钱", "划算", "福利", "大促", "囤货", "年货", "过节", "节日", "开学"),
             "想买的东西太多，钱包却总是不答应？", "省钱 过节 大促 囤货"),
    "general": ((), "好东西太多，总是不知道该怎么选？", "日常好物 生活"),
}

TONES = {
    "fun": ("搞笑", "幽默", "逗", "沙雕", "段子", "有趣", "轻松", "俏皮", "整活"),
    "pro": ("专业", "干货", "测评", "理性", "知识", "严谨", "科普", "实用"),
    "warm": ("亲切", "温柔", "闺蜜", "家人", "治愈", "温暖", "真诚"),
}
HOOKS = {
    "warm": ("家人们，今天给大家挖到宝了！", "先别划走，这条视频能帮你省心！",
             "最近好多朋友问我在用什么，今天说清楚。"),
    "pro": ("买{short}之前，先看完这条视频。", "用很短的时间，把{short}讲明白。",
            "关于{short}，很多人都问错了问题。"),
    "fun": ("老板说这条视频拍不好，就扣我鸡腿……", "别人还在纠结，我已经用上{short}了。",
            "听说你还在为这件事发愁？看我的！"),
}
PROOFS = {
    "warm": "我是{name}，自己一直在用，推荐给你们的都是我真心觉得值的。",
    "pro": "{name}亲自下单走了全流程：{delivery}。",
    "fun": "{name}亲测，用上之后连我家猫都夸我会过日子。",
}
CTAS = {
    "warm": "「{label}」到手价{price}，点我主页链接就能下单。",
    "pro": "「{label}」到手价{price}，下单入口在我主页链接。",
    "fun": "「{label}」到手价{price}，手慢了可别怪我没提醒，主页链接冲！",
}
TONE_NAMES = {"warm": "亲切风格", "pro": "专业风格", "fun": "搞笑风格"}
CTA_NO_PRODUCT = "想要的朋友评论区留言，我发你专属链接。"
MUSIC = {"warm": ("温暖治愈", "轻音乐", "生活vlog"), "pro": ("简洁节拍", "科技感", "知识分享"),
         "fun": ("搞笑音效", "轻快俏皮", "魔性节奏")}
COVER = {"warm": ("真人出镜", "暖色调"), "pro": ("商品特写", "清晰大字"), "fun": ("夸张表情", "对比画面")}

_angle_vectors: Any = None


def _pick(options: tuple[str, ...], seed: str) -> str:
    return options[hashlib.sha256(seed.encode()).digest()[0] % len(options)]


def tone_of(style: str) -> str:
    for tone, words in TONES.items():
        if any(w in (style or "") for w in words):
            return tone
    return "warm"


def angle_of(topic: str, facts: ScriptFacts | None) -> str:
    """The angle by keywords of the product (the pain it solves), then of the topic, then the
    nearest by embeddings."""
    product = f"{facts.title} {facts.name} {facts.description}" if facts else ""
    for text in (product, topic):
        for name, (words, _pain, _desc) in ANGLES.items():
            if any(w in text for w in words):
                return name
    wanted = f"{topic} {facts.label if facts else ''}".strip()
    return _nearest_angle(wanted) if wanted else "general"


@functools.lru_cache(maxsize=1024)
def _nearest_angle(wanted: str) -> str:
    """The angle whose description is nearest `wanted` by the in-process embeddings (cached:
    topics repeat, and a loaded host makes a query cost more than the rest of a script)."""
    try:
        from content_ai import embeddings

        global _angle_vectors
        if _angle_vectors is None:
            _angle_vectors = embeddings.passages([desc for _w, _p, desc in ANGLES.values()])
        scores = embeddings.similarity(embeddings.query(wanted), _angle_vectors)
        return list(ANGLES)[int(scores.argmax())]
    except Exception as exc:  # the offline path must answer whatever the embedding engine does
        log.warning("script angle by embeddings failed: %s", type(exc).__name__)
        return "general"


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)}


def ranked_points(facts: ScriptFacts | None, topic: str) -> list[str]:
    """The product's selling points, the ones sharing most character pairs with the topic first
    (stable otherwise: the description's order); then buying online."""
    if facts is None:
        return ["线上直接下单，不用跑腿", "卡券随时在「我的卡券」查看"]
    wanted = _bigrams(topic)
    points = sorted(facts.points, key=lambda p: -len(wanted & _bigrams(p))) if wanted else list(facts.points)
    extra = f"「{facts.label}」线上直接下单，不用跑腿"  # the delivery fact is the proof's
    return points + ([extra] if extra not in points else [])


def compose(facts: ScriptFacts | None, *, topic: str, style: str, creator_name: str,
            title_topic: str | None = None) -> dict[str, Any]:
    """The script as content_ai.scripts.ModelScript reads it (title, variants, music, cover);
    `topic` chooses the angle and the points, `title_topic` (default: the topic) is shown."""
    tone, angle = tone_of(style), angle_of(topic, facts)
    short = (facts.name if facts else "好物")[:12]
    seed = f"{topic}|{style}|{creator_name}|{facts.sku if facts else ''}"
    hook = _pick(HOOKS[tone], seed).format(short=short)
    pain = ANGLES[angle][1]
    points = ranked_points(facts, topic)
    name = creator_name or "我"
    delivery = facts.delivery if facts else "付款后自动发货"
    proof = PROOFS[tone].format(name=name, delivery=delivery)
    if facts is not None:
        cta = CTAS[tone].format(label=facts.label[:30], price=facts.price)
    else:
        cta = CTA_NO_PRODUCT
    variants = [
        {"duration": 15, "hook": hook, "pain_point": pain, "selling_points": points[:1],
         "proof": delivery, "call_to_action": cta},
        {"duration": 30, "hook": hook, "pain_point": pain, "selling_points": points[:3],
         "proof": proof, "call_to_action": cta},
        {"duration": 60, "hook": hook, "pain_point": f"{pain}今天这条视频，帮你把这件事解决。",
         "selling_points": points[:5], "proof": f"{proof}{delivery}。" if tone != "pro" else proof,
         "call_to_action": f"{cta}有问题评论区留言，我会认真回复。"},
    ]
    shown = topic if title_topic is None else title_topic
    title = f"{shown}·{short}" if shown and facts else (shown or f"{short}推荐")
    cover = [f"大字标题：{short}"[:16], *COVER[tone]]
    if style:  # the tone's name, not the style as typed (which may hold numbers the facts lack)
        cover.append(TONE_NAMES[tone])
    return {"title": title[:30], "variants": variants, "music": list(MUSIC[tone]), "cover": cover}
