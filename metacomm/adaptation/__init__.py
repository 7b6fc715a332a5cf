"""metacomm.adaptation."""
