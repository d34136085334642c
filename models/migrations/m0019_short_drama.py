"""Issue 13: short-drama series, episodes and the products placed in them (models/drama.py).

Indexes (declared in the models' Meta): drama_series (creator_id, id) for a creator's series
newest first; drama_episode (series_id, number) unique, which also finds a series' episodes;
drama_episode (live_session_id) for the episodes linked to a session (the live admin page);
drama_placement (episode_id, sku_id) unique, also an episode's products; (sku_id) for the
foreign key. The funnel reads activity_event through its (creator_id, kind, ref) index and orders
through the partial live_id index, so it adds none there.
"""

from __future__ import annotations

import peewee as pw

from models.drama import DramaEpisode, DramaPlacement, DramaSeries

TABLES: list[type[pw.Model]] = [DramaSeries, DramaEpisode, DramaPlacement]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)  # with the indexes declared in their Meta
