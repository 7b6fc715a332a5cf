"""metacomm.sims."""
