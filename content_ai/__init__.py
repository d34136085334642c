"""Content generation: sales scripts for creators and answers for community groups.

Today everything is offline: Chinese templates filled from the catalog, the level table and the
settings (`content_ai.offline`). The model provider (`content_ai.provider.Provider`: the openai
client against any OpenAI-compatible server, with breaker, cache and quotas) is built by the
wiring as `Runtime.ai`; its answers are None whenever the offline path must answer.

    generate_script(topic, *, creator_name, product=None) -> str
    answer(question, settings=...) -> str | None   # None: nothing useful to say, stay silent
"""

from content_ai.offline import Facts, ProductInfo, answer, generate_script, load_facts

__all__ = ["Facts", "ProductInfo", "answer", "generate_script", "load_facts"]
from content_ai.answers import Reply, reply  # noqa: E402  (issue 16: the grounded answer engine)

__all__ += ["Reply", "reply"]
