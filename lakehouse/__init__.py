"""The lake: Iceberg tables of the dbt marts, written, audited and published as one build at a time.

- `lakehouse.catalog`: which catalog and table a lake path means (local SQL catalog or Glue).
- `lakehouse.publish`: how a build stages its marts and publishes them all at once.
- `lakehouse.builds`: how a reader pins one published build (current, by snapshot, as of a time).
- `python -m lakehouse`: list builds, roll back, and remove what old and failed builds left.
"""
