"""Evidence that a synthetic cohort is faithful, diverse and copies no training scan."""
