"""RQ jobs. Each takes ids, batches its work, and is safe to run twice."""
