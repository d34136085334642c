"""RQ jobs. Each takes ids, batches its work, and is safe to run twice.

Jobs are entrypoints like the web views: they get their dependencies in one way, the worker's
runtime through `tasks.context.runtime()` (installed by `qianxing.wiring.bootstrap`, which the
worker calls at start), and hand them down as arguments. `tasks.queues` is the enqueue layer
(one helper per job) and uses the runtime's queue and Redis the same way.
"""
