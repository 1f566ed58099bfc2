"""How loud each rule is on a feed, and, with attack labels, what it
catches. The report `detect noise` prints, which a detection engineer reads before switching a
pack on.

- `collect.py`: the replay (the real pipeline, in this process) and what it observed;
- `report.py`: the report as data (`--format json`);
- `render.py`: the report as text and as a markdown table for docs/rules.md.
"""
