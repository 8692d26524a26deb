"""smoothcache.schedules: schedule files shipped with the package (JSON, format v1)."""
