"""Readers and writers for the formats bioprune reads and writes."""
