"""Chat-facing code: the delivery notifiers now; the conversation core and adapters later."""
