"""GitHub push webhook: verifies deliveries and queues re-indexing jobs."""
