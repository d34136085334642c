"""Content generation: sales scripts for creators and answers for community groups.

Today everything is offline: Chinese templates filled from the catalog, the level table and the
settings (`content_ai.offline`). The AI path (the openai client against an OpenAI-compatible
server) arrives in a later issue behind a setting; callers keep using these two functions.

    generate_script(topic, *, creator_name, product=None) -> str
    answer(question, settings=...) -> str | None   # None: nothing useful to say, stay silent
"""

from content_ai.offline import Facts, ProductInfo, answer, generate_script, load_facts

__all__ = ["Facts", "ProductInfo", "answer", "generate_script", "load_facts"]
