-- Public keys (a JWK set, as JSON) a client signs its JWT-bearer assertions with.
ALTER TABLE clients ADD COLUMN jwks TEXT;
