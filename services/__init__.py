"""The chat services: relay, controller, management and auth, one package each."""
