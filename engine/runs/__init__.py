"""The run modes: loops over the pipeline for finite inputs (`replay`, and `forked`, its
two-process form), for the live Compliance API (`live`, also `detect run --demo`), and
one marked test alert to one destination (`probe`, `detect alerts test`)."""
