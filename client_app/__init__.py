"""Flower ClientApp for fedzda."""
