"""metacomm.codecs."""
