"""Hardware component models built on the tlmsim framework."""
