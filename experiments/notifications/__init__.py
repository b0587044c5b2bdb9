"""Telling people that work finished: signed webhooks per experiment and live browser notifications."""
