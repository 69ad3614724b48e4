"""The auth service: accounts, argon2id passwords, short-lived JWTs, refresh tokens, JWKS."""
