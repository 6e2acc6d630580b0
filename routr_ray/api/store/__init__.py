"""Where API resources live: PostgreSQL (``postgres.py``), the YAML directory, read-only (``files.py``), or memory
(``memory.py``, tests), all behind :class:`~routr_ray.api.store.base.ResourceStore`."""
