"""Workflows: build, departments, counties, collect, validate, refresh, mail — what a clerk's button or
command does. They use the rules, the OOXML layer and the ledger below them, never the front ends."""
