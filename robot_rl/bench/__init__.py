"""`robot-rl bench ...`: measurements that print ratios against a baseline from the same run."""
