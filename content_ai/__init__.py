"""Content generation (scripts, talk tracks, replies) through the openai client; arrives with
the bots and content issues."""
