"""Predictions made elsewhere, uploaded per dataset and scored as detector `external:<name>`."""
