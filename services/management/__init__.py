"""The management service: teams, members and roles, and message history over REST (``/v1``)."""
