"""The run modes: loops over the pipeline for finite inputs (`replay`, and `forked`, its
two-process form) and for the live Compliance API (`live`, also `detect run --demo`)."""
