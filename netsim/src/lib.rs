//! netsim: filled by its own issue.
