"""Flower ServerApp for fedzda."""
