"""The machinery that serves a class: job queue, side-by-side passes, bounded caches, the on-disk store."""
