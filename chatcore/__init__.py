"""Shared code for every chat service: settings, logging, errors, clients, tokens, protocol."""
