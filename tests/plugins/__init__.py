"""Detector plug-ins used by the tests (load with DIFFPLATFORM_DETECTOR_MODULES)."""
