"""Settings split by environment: base, local (developer default), production, test."""
