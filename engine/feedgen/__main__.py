"""`python -m engine.feedgen`: write a feed (engine/feedgen/writer.py)."""

from engine.feedgen.writer import main

if __name__ == "__main__":
    raise SystemExit(main())
