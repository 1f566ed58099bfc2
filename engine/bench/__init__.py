"""`detect bench`: how fast the whole pipeline runs, next to the floor it cannot beat.

Every figure is measured in this one run, on this machine, over the same file: a bare
`json.loads` loop (what any pure-Python pipeline pays before doing anything), then the
full pipeline (read → parse/validate → reorder → evaluate → correlate → SQLite outbox,
committed per 1,000 activities as the poller commits per page; with `--redis URL`, also
with the state on a Redis, counting its round trips). Each measurement runs in
a fresh child process, so its peak RSS is its own; machines are noisy, so each is
repeated and the median reported, and the ratio is what to compare across machines.
"""
