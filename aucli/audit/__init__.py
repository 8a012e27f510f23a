"""Audit: find labels that look wrong with out-of-fold predictions and MDWA's truncation (DESIGN.md section 3)."""
