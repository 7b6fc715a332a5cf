"""metacomm.scenarios."""
